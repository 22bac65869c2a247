using System.Collections;
using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Lutra.Runtime.ChatTemplates;

/// <summary>
/// Converts between template values and JSON: <see cref="FromJson"/> reads System.Text.Json elements,
/// <see cref="Dumps"/> writes exactly what Python's <c>json.dumps</c> writes.
/// </summary>
internal static class TemplateJson
{
    public static object? FromJson(JsonElement element)
    {
        switch (element.ValueKind)
        {
            case JsonValueKind.Object:
                var dict = new TemplateDict();
                foreach (var property in element.EnumerateObject())
                    dict[property.Name] = FromJson(property.Value);
                return dict;
            case JsonValueKind.Array:
                var list = new TemplateList();
                foreach (var item in element.EnumerateArray())
                    list.Add(FromJson(item));
                return list;
            case JsonValueKind.String:
                return element.GetString();
            case JsonValueKind.Number:
                var raw = element.GetRawText();
                if (raw.AsSpan().IndexOfAny(".eE") < 0 && element.TryGetInt64(out var l))
                    return l;
                return element.GetDouble();
            case JsonValueKind.True:
                return true;
            case JsonValueKind.False:
                return false;
            default:
                return null;
        }
    }

    /// <summary>Converts a .NET value supplied by the caller into the template object model.</summary>
    public static object? FromClr(object? value) => value switch
    {
        null => null,
        string or bool or long or double or TemplateList or TemplateDict or TemplateNamespace or TemplateFunction or Undefined => value,
        int i => (long)i,
        uint u => (long)u,
        short s => (long)s,
        byte b => (long)b,
        float f => (double)f,
        decimal m => (double)m,
        char c => c.ToString(),
        JsonElement e => FromJson(e),
        JsonDocument d => FromJson(d.RootElement),
        ChatTemplateMessage m => m.ToTemplateValue(),
        IDictionary map => FromMap(map),
        IEnumerable items => new TemplateList(items.Cast<object?>().Select(FromClr)),
        _ => throw new ArgumentException($"a value of type {value.GetType().Name} cannot be passed to a chat template"),
    };

    private static TemplateDict FromMap(IDictionary map)
    {
        var dict = new TemplateDict();
        foreach (DictionaryEntry entry in map)
            dict[FromClr(entry.Key) ?? throw new ArgumentException("chat template dictionary keys cannot be null")] = FromClr(entry.Value);
        return dict;
    }

    public sealed record Options(bool EnsureAscii, string? Indent, string ItemSeparator, string KeySeparator, bool SortKeys);

    public static string Dumps(object? value, Options options)
    {
        var sb = new StringBuilder();
        Write(sb, value, options, 0);
        return sb.ToString();
    }

    private static void Write(StringBuilder sb, object? value, Options o, int level)
    {
        switch (value)
        {
            case null:
                sb.Append("null");
                break;
            case bool b:
                sb.Append(b ? "true" : "false");
                break;
            case long l:
                sb.Append(l.ToString(CultureInfo.InvariantCulture));
                break;
            case double d:
                sb.Append(FloatJson(d));
                break;
            case string s:
                WriteString(sb, s, o.EnsureAscii);
                break;
            case TemplateList list:
                if (list.Count == 0)
                {
                    sb.Append("[]");
                    break;
                }
                sb.Append('[');
                for (var i = 0; i < list.Count; i++)
                {
                    if (i > 0)
                        sb.Append(o.ItemSeparator);
                    NewLine(sb, o, level + 1);
                    Write(sb, list[i], o, level + 1);
                }
                NewLine(sb, o, level);
                sb.Append(']');
                break;
            case TemplateDict dict:
                if (dict.Count == 0)
                {
                    sb.Append("{}");
                    break;
                }
                IEnumerable<KeyValuePair<object, object?>> pairs = dict;
                if (o.SortKeys)
                    pairs = SortedByKey(dict);
                sb.Append('{');
                var first = true;
                foreach (var (k, v) in pairs)
                {
                    if (!first)
                        sb.Append(o.ItemSeparator);
                    first = false;
                    NewLine(sb, o, level + 1);
                    WriteString(sb, KeyText(k), o.EnsureAscii);
                    sb.Append(o.KeySeparator);
                    Write(sb, v, o, level + 1);
                }
                NewLine(sb, o, level);
                sb.Append('}');
                break;
            default:
                throw new TemplateRuntimeException($"Object of type {PyValue.TypeName(value)} is not JSON serializable");
        }
    }

    private static List<KeyValuePair<object, object?>> SortedByKey(TemplateDict dict)
    {
        var pairs = dict.ToList();
        pairs.Sort((a, b) => PyValue.Compare(a.Key, b.Key, "<"));
        return pairs;
    }

    private static void NewLine(StringBuilder sb, Options o, int level)
    {
        if (o.Indent is null)
            return;
        sb.Append('\n');
        for (var i = 0; i < level; i++)
            sb.Append(o.Indent);
    }

    private static string KeyText(object key) => key switch
    {
        string s => s,
        bool b => b ? "true" : "false",
        long l => l.ToString(CultureInfo.InvariantCulture),
        double d => FloatJson(d),
        _ => throw new TemplateRuntimeException($"keys must be str, int, float, bool or None, not {PyValue.TypeName(key)}"),
    };

    private static string FloatJson(double d)
    {
        if (double.IsNaN(d))
            return "NaN";
        if (double.IsInfinity(d))
            return d > 0 ? "Infinity" : "-Infinity";
        return PyValue.FloatRepr(d);
    }

    private static void WriteString(StringBuilder sb, string s, bool ensureAscii)
    {
        sb.Append('"');
        foreach (var c in s)
        {
            switch (c)
            {
                case '"': sb.Append("\\\""); break;
                case '\\': sb.Append("\\\\"); break;
                case '\n': sb.Append("\\n"); break;
                case '\r': sb.Append("\\r"); break;
                case '\t': sb.Append("\\t"); break;
                case '\b': sb.Append("\\b"); break;
                case '\f': sb.Append("\\f"); break;
                default:
                    if (c < 0x20 || (ensureAscii && c > 0x7e))
                        sb.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
                    else
                        sb.Append(c);
                    break;
            }
        }
        sb.Append('"');
    }
}
