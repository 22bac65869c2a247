namespace Lutra.Runtime.ChatTemplates;

/// <summary>
/// A chat template could not be parsed or rendered: a syntax error, a construct this engine does not
/// support, an undefined value used where Jinja would fail, or the template's own <c>raise_exception</c>.
/// The message names the construct and its position (<c>line:column</c>, both 1-based) when known.
/// </summary>
public sealed class ChatTemplateException : Exception
{
    public ChatTemplateException()
    {
    }

    public ChatTemplateException(string message)
        : base(message)
    {
    }

    public ChatTemplateException(string message, Exception innerException)
        : base(message, innerException)
    {
    }

    internal ChatTemplateException(string message, SourcePosition position)
        : base($"{message} (at {position})")
    {
        Line = position.Line;
        Column = position.Column;
    }

    /// <summary>1-based line of the construct that failed, when known.</summary>
    public int? Line { get; }

    /// <summary>1-based column of the construct that failed, when known.</summary>
    public int? Column { get; }
}

/// <summary>A 1-based line and column in the template source.</summary>
internal readonly record struct SourcePosition(int Line, int Column)
{
    public override string ToString() => $"{Line}:{Column}";
}
