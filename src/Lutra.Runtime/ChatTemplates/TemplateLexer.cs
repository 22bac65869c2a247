using System.Globalization;
using System.Text;

namespace Lutra.Runtime.ChatTemplates;

internal enum TokenKind
{
    Text,
    VariableBegin,
    VariableEnd,
    BlockBegin,
    BlockEnd,
    Name,
    String,
    Integer,
    Float,
    Operator,
    EndOfTemplate,
}

internal readonly record struct Token(TokenKind Kind, string Value, SourcePosition Position)
{
    public bool IsOperator(string value) => Kind == TokenKind.Operator && Value == value;

    public bool IsName(string value) => Kind == TokenKind.Name && Value == value;

    public override string ToString() => Kind switch
    {
        TokenKind.EndOfTemplate => "end of template",
        TokenKind.VariableEnd => "'}}'",
        TokenKind.BlockEnd => "'%}'",
        TokenKind.String => $"string '{Value}'",
        _ => $"'{Value}'",
    };
}

/// <summary>
/// Splits a template into text and tag tokens the way jinja2's lexer does with
/// <c>trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False</c>: newlines are normalised
/// to <c>\n</c>, one trailing newline is dropped, <c>-</c> markers strip all whitespace beside a tag,
/// a block or comment tag eats the single newline after it, and a block or comment tag alone on its
/// line (after spaces/tabs only) eats that indentation.
/// </summary>
internal sealed class TemplateLexer
{
    private static readonly string[] Operators =
    [
        "//", "**", "==", "!=", "<=", ">=",
        "+", "-", "/", "*", "%", "~", "[", "]", "(", ")", "{", "}", "<", ">", "=", ".", ":", "|", ",", ";",
    ];

    private readonly string _source;
    private readonly int[] _lineStarts;
    private readonly List<Token> _tokens = [];
    private int _pos;

    private TemplateLexer(string source)
    {
        _source = Normalize(source);
        var starts = new List<int> { 0 };
        for (var i = 0; i < _source.Length; i++)
        {
            if (_source[i] == '\n')
                starts.Add(i + 1);
        }
        _lineStarts = [.. starts];
    }

    public static List<Token> Tokenize(string source)
    {
        var lexer = new TemplateLexer(source);
        lexer.Run();
        return lexer._tokens;
    }

    private static string Normalize(string source)
    {
        var text = source.Replace("\r\n", "\n", StringComparison.Ordinal).Replace('\r', '\n');
        return text.EndsWith('\n') ? text[..^1] : text;
    }

    private SourcePosition PositionOf(int offset)
    {
        var line = Array.BinarySearch(_lineStarts, offset);
        if (line < 0)
            line = ~line - 1;
        return new SourcePosition(line + 1, offset - _lineStarts[line] + 1);
    }

    private ChatTemplateException Error(string message, int offset) => new(message, PositionOf(offset));

    private void Run()
    {
        // jinja2 starts in "line starting" state, so a tag indented on the first line is lstripped too.
        var lineStarting = true;
        while (_pos < _source.Length)
        {
            var tagStart = FindTagStart(_pos);
            if (tagStart < 0)
            {
                AddText(_source[_pos..], _pos);
                break;
            }

            var text = _source[_pos..tagStart];
            var kind = _source[tagStart + 1];
            var sign = tagStart + 2 < _source.Length && _source[tagStart + 2] is '-' or '+' ? _source[tagStart + 2] : '\0';
            if (sign == '-')
            {
                text = text.TrimEnd();
            }
            else if (sign != '+' && kind != '{')
            {
                var lineStart = text.LastIndexOf('\n') + 1;
                if ((lineStart > 0 || lineStarting) && lineStart < text.Length && IsBlank(text.AsSpan(lineStart)))
                    text = text[..lineStart];
            }
            AddText(text, _pos);

            _pos = tagStart + 2 + (sign == '\0' ? 0 : 1);
            switch (kind)
            {
                case '#':
                    SkipComment(tagStart);
                    break;
                case '{':
                    _tokens.Add(new Token(TokenKind.VariableBegin, "{{", PositionOf(tagStart)));
                    LexTag(isBlock: false, tagStart);
                    break;
                default:
                    if (TryLexRaw(tagStart))
                        break;
                    _tokens.Add(new Token(TokenKind.BlockBegin, "{%", PositionOf(tagStart)));
                    LexTag(isBlock: true, tagStart);
                    break;
            }
            lineStarting = _pos > 0 && _source[_pos - 1] == '\n';
        }
        _tokens.Add(new Token(TokenKind.EndOfTemplate, "", PositionOf(_source.Length)));
    }

    private int FindTagStart(int from)
    {
        for (var i = _source.IndexOf('{', from); i >= 0 && i + 1 < _source.Length; i = _source.IndexOf('{', i + 1))
        {
            if (_source[i + 1] is '{' or '%' or '#')
                return i;
        }
        return -1;
    }

    private static bool IsBlank(ReadOnlySpan<char> text)
    {
        foreach (var c in text)
        {
            if (!char.IsWhiteSpace(c))
                return false;
        }
        return true;
    }

    private void AddText(string text, int offset)
    {
        if (text.Length > 0)
            _tokens.Add(new Token(TokenKind.Text, text, PositionOf(offset)));
    }

    private int SkipSpaces(int at)
    {
        while (at < _source.Length && char.IsWhiteSpace(_source[at]))
            at++;
        return at;
    }

    /// <summary>Recognises <c>{% raw %}...{% endraw %}</c> and emits its content as plain text.</summary>
    private bool TryLexRaw(int tagStart)
    {
        var at = SkipSpaces(_pos);
        if (!Matches(at, "raw"))
            return false;
        at = SkipSpaces(at + 3);
        if (Matches(at, "-%}"))
            at = SkipSpaces(at + 3);
        else if (Matches(at, "%}"))
            at += 2;
        else
            return false;

        var contentStart = at;
        for (var end = _source.IndexOf("{%", at, StringComparison.Ordinal); end >= 0; end = _source.IndexOf("{%", end + 2, StringComparison.Ordinal))
        {
            var q = end + 2;
            var openSign = q < _source.Length && _source[q] is '-' or '+' ? _source[q++] : '\0';
            q = SkipSpaces(q);
            if (!Matches(q, "endraw"))
                continue;
            q = SkipSpaces(q + 6);
            var closeSign = q < _source.Length && _source[q] is '-' or '+' ? _source[q++] : '\0';
            if (!Matches(q, "%}"))
                continue;

            var content = _source[contentStart..end];
            if (openSign == '-')
            {
                content = content.TrimEnd();
            }
            else if (openSign != '+')
            {
                var lineStart = content.LastIndexOf('\n') + 1;
                if (lineStart > 0 && lineStart < content.Length && IsBlank(content.AsSpan(lineStart)))
                    content = content[..lineStart];
            }
            AddText(content, contentStart);
            _pos = q + 2;
            AfterTagEnd(closeSign, trimNewline: true);
            return true;
        }
        throw Error("missing '{% endraw %}' for this raw block", tagStart);
    }

    private void SkipComment(int tagStart)
    {
        var end = _source.IndexOf("#}", _pos, StringComparison.Ordinal);
        if (end < 0)
            throw Error("unterminated comment '{#'", tagStart);
        var sign = end > _pos && _source[end - 1] is '-' or '+' ? _source[end - 1] : '\0';
        _pos = end + 2;
        AfterTagEnd(sign, trimNewline: true);
    }

    /// <summary>Applies what follows a tag's closing delimiter: <c>-</c> eats all whitespace, trim_blocks one newline.</summary>
    private void AfterTagEnd(char sign, bool trimNewline)
    {
        if (sign == '-')
        {
            while (_pos < _source.Length && char.IsWhiteSpace(_source[_pos]))
                _pos++;
        }
        else if (sign != '+' && trimNewline && _pos < _source.Length && _source[_pos] == '\n')
        {
            _pos++;
        }
    }

    private void LexTag(bool isBlock, int tagStart)
    {
        var closer = isBlock ? "%}" : "}}";
        var depth = 0;
        while (true)
        {
            while (_pos < _source.Length && char.IsWhiteSpace(_source[_pos]))
                _pos++;
            if (_pos >= _source.Length)
                throw Error($"unclosed tag '{(isBlock ? "{%" : "{{")}': missing '{closer}'", tagStart);

            if (depth == 0)
            {
                var sign = _source[_pos] is '-' or '+' && Matches(_pos + 1, closer) ? _source[_pos] : '\0';
                if (sign == '+' && !isBlock)
                    sign = '\0';
                if (sign != '\0' || Matches(_pos, closer))
                {
                    var closeAt = _pos;
                    _pos += closer.Length + (sign == '\0' ? 0 : 1);
                    _tokens.Add(new Token(isBlock ? TokenKind.BlockEnd : TokenKind.VariableEnd, closer, PositionOf(closeAt)));
                    AfterTagEnd(sign, trimNewline: isBlock);
                    return;
                }
            }

            var start = _pos;
            var c = _source[_pos];
            if (char.IsAsciiLetter(c) || c == '_')
            {
                while (_pos < _source.Length && (char.IsAsciiLetterOrDigit(_source[_pos]) || _source[_pos] == '_'))
                    _pos++;
                _tokens.Add(new Token(TokenKind.Name, _source[start.._pos], PositionOf(start)));
            }
            else if (char.IsAsciiDigit(c))
            {
                LexNumber(start);
            }
            else if (c is '\'' or '"')
            {
                _tokens.Add(new Token(TokenKind.String, LexString(start), PositionOf(start)));
            }
            else
            {
                var op = Array.Find(Operators, o => Matches(_pos, o))
                    ?? throw Error($"unexpected character '{c}' in tag", start);
                _pos += op.Length;
                if (op is "(" or "[" or "{")
                    depth++;
                else if (op is ")" or "]" or "}")
                    depth--;
                if (depth < 0)
                    throw Error($"unexpected '{op}'", start);
                _tokens.Add(new Token(TokenKind.Operator, op, PositionOf(start)));
            }
        }
    }

    private bool Matches(int at, string text) =>
        at + text.Length <= _source.Length && string.CompareOrdinal(_source, at, text, 0, text.Length) == 0;

    private void LexNumber(int start)
    {
        SkipDigits();
        var isFloat = false;
        if (_pos + 1 < _source.Length && _source[_pos] == '.' && char.IsAsciiDigit(_source[_pos + 1]))
        {
            isFloat = true;
            _pos++;
            SkipDigits();
        }
        if (_pos < _source.Length && _source[_pos] is 'e' or 'E')
        {
            var exp = _pos + 1;
            if (exp < _source.Length && _source[exp] is '+' or '-')
                exp++;
            if (exp < _source.Length && char.IsAsciiDigit(_source[exp]))
            {
                isFloat = true;
                _pos = exp;
                SkipDigits();
            }
        }
        var text = _source[start.._pos].Replace("_", "", StringComparison.Ordinal);
        if (isFloat)
        {
            _tokens.Add(new Token(TokenKind.Float, text, PositionOf(start)));
        }
        else
        {
            if (!long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out _))
                throw Error($"integer literal '{text}' is too large", start);
            _tokens.Add(new Token(TokenKind.Integer, text, PositionOf(start)));
        }
    }

    private void SkipDigits()
    {
        while (_pos < _source.Length && (char.IsAsciiDigit(_source[_pos]) || (_source[_pos] == '_' && _pos + 1 < _source.Length && char.IsAsciiDigit(_source[_pos + 1]))))
            _pos++;
    }

    /// <summary>Reads a quoted literal and decodes Python's escape sequences, as jinja2 does.</summary>
    private string LexString(int start)
    {
        var quote = _source[_pos++];
        var sb = new StringBuilder();
        while (true)
        {
            if (_pos >= _source.Length)
                throw Error("unterminated string literal", start);
            var c = _source[_pos++];
            if (c == quote)
                return sb.ToString();
            if (c != '\\')
            {
                sb.Append(c);
                continue;
            }
            if (_pos >= _source.Length)
                throw Error("unterminated string literal", start);
            var e = _source[_pos++];
            switch (e)
            {
                case '\n': break;
                case '\\': sb.Append('\\'); break;
                case '\'': sb.Append('\''); break;
                case '"': sb.Append('"'); break;
                case 'a': sb.Append('\a'); break;
                case 'b': sb.Append('\b'); break;
                case 'f': sb.Append('\f'); break;
                case 'n': sb.Append('\n'); break;
                case 'r': sb.Append('\r'); break;
                case 't': sb.Append('\t'); break;
                case 'v': sb.Append('\v'); break;
                case 'x': AppendCodePoint(sb, ReadHex(2, start), start); break;
                case 'u': AppendCodePoint(sb, ReadHex(4, start), start); break;
                case 'U': AppendCodePoint(sb, ReadHex(8, start), start); break;
                case >= '0' and <= '7':
                    var value = e - '0';
                    for (var i = 0; i < 2 && _pos < _source.Length && _source[_pos] is >= '0' and <= '7'; i++)
                        value = value * 8 + (_source[_pos++] - '0');
                    AppendCodePoint(sb, value, start);
                    break;
                default:
                    // Python keeps unknown escapes verbatim, backslash included.
                    sb.Append('\\').Append(e);
                    break;
            }
        }
    }

    private int ReadHex(int digits, int start)
    {
        if (_pos + digits > _source.Length
            || !int.TryParse(_source.AsSpan(_pos, digits), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var value))
            throw Error("truncated escape sequence in string literal", start);
        _pos += digits;
        return value;
    }

    private void AppendCodePoint(StringBuilder sb, int codePoint, int start)
    {
        if (codePoint is < 0 or > 0x10FFFF)
            throw Error("escape sequence out of range in string literal", start);
        if (codePoint is >= 0xD800 and <= 0xDFFF)
            sb.Append((char)codePoint);
        else
            sb.Append(char.ConvertFromUtf32(codePoint));
    }
}
