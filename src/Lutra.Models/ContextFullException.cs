namespace Lutra.Models;

/// <summary>The tokens to evaluate do not fit in what is left of the context (KV cache).</summary>
public sealed class ContextFullException : InvalidOperationException
{
    public ContextFullException() { }

    public ContextFullException(string message) : base(message) { }

    public ContextFullException(string message, Exception innerException) : base(message, innerException) { }

    public ContextFullException(int position, int tokens, int capacity)
        : base($"the context is full: {tokens} more token(s) at position {position} exceed the context size {capacity}; " +
            "use a larger context size (-c) or a shorter input")
    {
    }
}
