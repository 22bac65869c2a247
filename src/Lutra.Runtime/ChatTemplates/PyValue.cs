using System.Globalization;
using System.Text;

namespace Lutra.Runtime.ChatTemplates;

/// <summary>Python semantics for template values: truthiness, str/repr, equality, ordering, iteration.</summary>
internal static class PyValue
{
    public static string TypeName(object? value) => value switch
    {
        null => "NoneType",
        bool => "bool",
        long => "int",
        double => "float",
        string => "str",
        TemplateList { IsTuple: true } => "tuple",
        TemplateList => "list",
        TemplateDict => "dict",
        TemplateNamespace => "Namespace",
        TemplateFunction => "function",
        LoopContext => "LoopContext",
        Undefined => "Undefined",
        _ => value.GetType().Name,
    };

    public static bool IsTruthy(object? value) => value switch
    {
        null => false,
        Undefined => false,
        bool b => b,
        long l => l != 0,
        double d => d != 0,
        string s => s.Length > 0,
        TemplateList list => list.Count > 0,
        TemplateDict dict => dict.Count > 0,
        _ => true,
    };

    /// <summary>Python's <c>str.upper()</c>, which maps ß to SS where .NET keeps ß.</summary>
    public static string Upper(string s) => s.ToUpperInvariant().Replace("ß", "SS", StringComparison.Ordinal);

    public static bool IsNumber(object? value) => value is long or double or bool;

    /// <summary>Python's <c>str()</c>; undefined prints as the empty string, as jinja2's default Undefined does.</summary>
    public static string ToStr(object? value) => value switch
    {
        string s => s,
        Undefined => "",
        _ => Repr(value),
    };

    public static string Repr(object? value)
    {
        var sb = new StringBuilder();
        AppendRepr(sb, value);
        return sb.ToString();
    }

    private static void AppendRepr(StringBuilder sb, object? value)
    {
        switch (value)
        {
            case null:
                sb.Append("None");
                break;
            case bool b:
                sb.Append(b ? "True" : "False");
                break;
            case long l:
                sb.Append(l.ToString(CultureInfo.InvariantCulture));
                break;
            case double d:
                sb.Append(FloatRepr(d));
                break;
            case string s:
                AppendStringRepr(sb, s);
                break;
            case Undefined:
                break;
            case TemplateList list:
                sb.Append(list.IsTuple ? '(' : '[');
                for (var i = 0; i < list.Count; i++)
                {
                    if (i > 0)
                        sb.Append(", ");
                    AppendRepr(sb, list[i]);
                }
                if (list.IsTuple && list.Count == 1)
                    sb.Append(',');
                sb.Append(list.IsTuple ? ')' : ']');
                break;
            case TemplateDict dict:
                sb.Append('{');
                var first = true;
                foreach (var (k, v) in dict)
                {
                    if (!first)
                        sb.Append(", ");
                    first = false;
                    AppendRepr(sb, k);
                    sb.Append(": ");
                    AppendRepr(sb, v);
                }
                sb.Append('}');
                break;
            case TemplateNamespace ns:
                sb.Append("<Namespace {");
                var firstAttr = true;
                foreach (var (k, v) in ns.Attributes)
                {
                    if (!firstAttr)
                        sb.Append(", ");
                    firstAttr = false;
                    AppendStringRepr(sb, k);
                    sb.Append(": ");
                    AppendRepr(sb, v);
                }
                sb.Append("}>");
                break;
            case TemplateFunction f:
                sb.Append("<function ").Append(f.Name).Append('>');
                break;
            default:
                sb.Append('<').Append(TypeName(value)).Append(" object>");
                break;
        }
    }

    private static void AppendStringRepr(StringBuilder sb, string s)
    {
        var quote = s.Contains('\'', StringComparison.Ordinal) && !s.Contains('"', StringComparison.Ordinal) ? '"' : '\'';
        sb.Append(quote);
        foreach (var c in s)
        {
            switch (c)
            {
                case '\\': sb.Append("\\\\"); break;
                case '\n': sb.Append("\\n"); break;
                case '\r': sb.Append("\\r"); break;
                case '\t': sb.Append("\\t"); break;
                default:
                    if (c == quote)
                        sb.Append('\\').Append(c);
                    else if (c < 0x20 || c == 0x7f)
                        sb.Append("\\x").Append(((int)c).ToString("x2", CultureInfo.InvariantCulture));
                    else
                        sb.Append(c);
                    break;
            }
        }
        sb.Append(quote);
    }

    /// <summary>Python's <c>repr(float)</c>: shortest round-trip digits, scientific outside [1e-4, 1e16).</summary>
    public static string FloatRepr(double d)
    {
        if (double.IsNaN(d))
            return "nan";
        if (double.IsInfinity(d))
            return d > 0 ? "inf" : "-inf";
        if (d == 0)
            return double.IsNegative(d) ? "-0.0" : "0.0";

        var r = Math.Abs(d).ToString("R", CultureInfo.InvariantCulture);
        var exponent = 0;
        var e = r.IndexOfAny(['E', 'e']);
        if (e >= 0)
        {
            exponent = int.Parse(r.AsSpan(e + 1), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture);
            r = r[..e];
        }
        var point = r.IndexOf('.', StringComparison.Ordinal);
        var intLength = point < 0 ? r.Length : point;
        var raw = r.Replace(".", "", StringComparison.Ordinal);
        var leadingZeros = raw.Length - raw.TrimStart('0').Length;
        var digits = raw.Trim('0');
        var sciExponent = intLength - 1 - leadingZeros + exponent;

        var sb = new StringBuilder();
        if (d < 0)
            sb.Append('-');
        if (sciExponent is >= -4 and < 16)
        {
            if (sciExponent >= 0)
            {
                var intDigits = digits.Length > sciExponent + 1 ? digits[..(sciExponent + 1)] : digits.PadRight(sciExponent + 1, '0');
                var frac = digits.Length > sciExponent + 1 ? digits[(sciExponent + 1)..] : "0";
                sb.Append(intDigits).Append('.').Append(frac);
            }
            else
            {
                sb.Append("0.").Append('0', -sciExponent - 1).Append(digits);
            }
        }
        else
        {
            sb.Append(digits[0]);
            if (digits.Length > 1)
                sb.Append('.').Append(digits, 1, digits.Length - 1);
            sb.Append('e').Append(sciExponent < 0 ? '-' : '+')
              .Append(Math.Abs(sciExponent).ToString("00", CultureInfo.InvariantCulture));
        }
        return sb.ToString();
    }

    public static bool AreEqual(object? a, object? b)
    {
        if (IsNumber(a) && IsNumber(b))
        {
            if (a is double || b is double)
                return ToDouble(a) == ToDouble(b);
            return ToLong(a) == ToLong(b);
        }
        switch (a)
        {
            case null:
                return b is null;
            case string s:
                return b is string t && string.Equals(s, t, StringComparison.Ordinal);
            case Undefined:
                return b is Undefined;
            case TemplateList la:
                if (b is not TemplateList lb || la.IsTuple != lb.IsTuple || la.Count != lb.Count)
                    return false;
                for (var i = 0; i < la.Count; i++)
                {
                    if (!AreEqual(la[i], lb[i]))
                        return false;
                }
                return true;
            case TemplateDict da:
                if (b is not TemplateDict db || da.Count != db.Count)
                    return false;
                foreach (var (k, v) in da)
                {
                    if (!db.TryGetValue(k, out var other) || !AreEqual(v, other))
                        return false;
                }
                return true;
            default:
                return ReferenceEquals(a, b);
        }
    }

    /// <summary>Python ordering for &lt; &gt; &lt;= &gt;=; numbers, strings, and lists of them.</summary>
    public static int Compare(object? a, object? b, string op)
    {
        if (a is Undefined u)
            throw new TemplateRuntimeException(u.Message);
        if (b is Undefined ub)
            throw new TemplateRuntimeException(ub.Message);
        if (IsNumber(a) && IsNumber(b))
        {
            if (a is double || b is double)
            {
                var (x, y) = (ToDouble(a), ToDouble(b));
                return x < y ? -1 : x > y ? 1 : 0;
            }
            return ToLong(a).CompareTo(ToLong(b));
        }
        if (a is string sa && b is string sb)
            return Math.Sign(string.CompareOrdinal(sa, sb));
        if (a is TemplateList la && b is TemplateList lb)
        {
            for (var i = 0; i < Math.Min(la.Count, lb.Count); i++)
            {
                if (!AreEqual(la[i], lb[i]))
                    return Compare(la[i], lb[i], op);
            }
            return la.Count.CompareTo(lb.Count);
        }
        throw new TemplateRuntimeException($"'{op}' not supported between instances of '{TypeName(a)}' and '{TypeName(b)}'");
    }

    public static long ToLong(object? value) => value switch
    {
        long l => l,
        bool b => b ? 1 : 0,
        double d => (long)d,
        _ => throw new TemplateRuntimeException($"expected an integer, got '{TypeName(value)}'"),
    };

    public static double ToDouble(object? value) => value switch
    {
        double d => d,
        long l => l,
        bool b => b ? 1 : 0,
        _ => throw new TemplateRuntimeException($"expected a number, got '{TypeName(value)}'"),
    };

    /// <summary>The items a <c>for</c> loop or <c>list()</c> would see.</summary>
    public static TemplateList Iterate(object? value) => value switch
    {
        TemplateList list => new TemplateList(list),
        TemplateDict dict => new TemplateList(dict.Keys),
        string s => new TemplateList(CodePoints(s)),
        Undefined => [],
        _ => throw new TemplateRuntimeException($"'{TypeName(value)}' object is not iterable"),
    };

    public static bool IsIterable(object? value) => value is TemplateList or TemplateDict or string or Undefined;

    public static long Length(object? value) => value switch
    {
        string s => CodePointCount(s),
        TemplateList list => list.Count,
        TemplateDict dict => dict.Count,
        Undefined => 0,
        _ => throw new TemplateRuntimeException($"object of type '{TypeName(value)}' has no len()"),
    };

    public static bool Contains(object? container, object? item)
    {
        switch (container)
        {
            case string s:
                if (item is not string needle)
                    throw new TemplateRuntimeException($"'in <string>' requires string as left operand, not {TypeName(item)}");
                return s.Contains(needle, StringComparison.Ordinal);
            case TemplateList list:
                return list.Exists(x => AreEqual(x, item));
            case TemplateDict dict:
                return item is not null && IsHashable(item) && dict.ContainsKey(item);
            case Undefined:
                return false;
            default:
                throw new TemplateRuntimeException($"argument of type '{TypeName(container)}' is not iterable");
        }
    }

    public static bool IsHashable(object? value) => value is null or string or long or double or bool
        || (value is TemplateList { IsTuple: true } t && t.TrueForAll(IsHashable));

    /// <summary>Python's <c>str.isspace()</c> for one UTF-16 unit; it also counts the separators U+001C..U+001F.</summary>
    public static bool IsSpace(char c) => char.IsWhiteSpace(c) || c is >= '\x1c' and <= '\x1f';

    public static string Strip(string s, string? chars, bool left, bool right)
    {
        var start = 0;
        var end = s.Length;
        bool Strippable(char c) => chars is null ? IsSpace(c) : chars.Contains(c, StringComparison.Ordinal);
        if (left)
        {
            while (start < end && Strippable(s[start]))
                start++;
        }
        if (right)
        {
            while (end > start && Strippable(s[end - 1]))
                end--;
        }
        return s[start..end];
    }

    public static bool HasSurrogates(string s)
    {
        foreach (var c in s)
        {
            if (char.IsSurrogate(c))
                return true;
        }
        return false;
    }

    public static long CodePointCount(string s)
    {
        if (!HasSurrogates(s))
            return s.Length;
        long count = 0;
        for (var i = 0; i < s.Length; i++)
        {
            if (char.IsHighSurrogate(s[i]) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1]))
                i++;
            count++;
        }
        return count;
    }

    /// <summary>Splits into Python characters (code points), keeping surrogate pairs together.</summary>
    public static List<object?> CodePoints(string s)
    {
        var result = new List<object?>(s.Length);
        for (var i = 0; i < s.Length; i++)
        {
            if (char.IsHighSurrogate(s[i]) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1]))
            {
                result.Add(s.Substring(i, 2));
                i++;
            }
            else
            {
                result.Add(s[i].ToString());
            }
        }
        return result;
    }

    /// <summary>Python's <c>str.splitlines()</c> without keepends.</summary>
    public static List<string> SplitLines(string s)
    {
        var lines = new List<string>();
        var start = 0;
        for (var i = 0; i < s.Length; i++)
        {
            var c = s[i];
            if (c is '\n' or '\r' or '\v' or '\f' or '\x1c' or '\x1d' or '\x1e' or '\x85' or '\u2028' or '\u2029')
            {
                lines.Add(s[start..i]);
                if (c == '\r' && i + 1 < s.Length && s[i + 1] == '\n')
                    i++;
                start = i + 1;
            }
        }
        if (start < s.Length)
            lines.Add(s[start..]);
        return lines;
    }
}
