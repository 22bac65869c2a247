namespace Lutra.Gguf;

/// <summary>
/// The one exception type the GGUF reader raises for a malformed or unsupported file. The message names
/// the offending field and the byte offset where it was read.
/// </summary>
public sealed class GgufFormatException : Exception
{
    public GgufFormatException() { }

    public GgufFormatException(string message) : base(message) { }

    public GgufFormatException(string message, Exception innerException) : base(message, innerException) { }

    public GgufFormatException(string field, long offset, string problem)
        : base($"invalid GGUF: {problem} (field '{field}' at byte offset {offset})")
    {
        Field = field;
        Offset = offset;
    }

    /// <summary>The header field that failed validation, e.g. "tensor_infos[3].type".</summary>
    public string? Field { get; }

    /// <summary>Absolute byte offset in the file where the field starts.</summary>
    public long Offset { get; } = -1;
}
