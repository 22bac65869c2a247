using System.Globalization;
using System.Text;

namespace Lutra.Runtime.ChatTemplates;

internal static partial class TemplateBuiltins
{
    private static bool IsMissing(object? value) => ReferenceEquals(value, CallArguments.Missing);

    private static object? Or(object? value, object? fallback) => IsMissing(value) ? fallback : value;

    public static object? ApplyFilter(string name, object? value, CallArguments args)
    {
        switch (name)
        {
            case "safe":
            case "string":
                args.Bind();
                return PyValue.ToStr(value);
            case "trim":
                return PyValue.Strip(PyValue.ToStr(value), OptionalString(args.Bind("chars")[0], "trim"), left: true, right: true);
            case "upper":
                args.Bind();
                return PyValue.Upper(PyValue.ToStr(value));
            case "lower":
                args.Bind();
                return PyValue.ToStr(value).ToLowerInvariant();
            case "capitalize":
                args.Bind();
                return Capitalize(PyValue.ToStr(value));
            case "title":
                args.Bind();
                return JinjaTitle(PyValue.ToStr(value));
            case "replace":
                var r = args.Bind("old", "new", "count");
                return Replace(PyValue.ToStr(value), RequireString(r[0], "replace old"), RequireString(r[1], "replace new"),
                    IsMissing(r[2]) || r[2] is null ? -1 : PyValue.ToLong(r[2]));
            case "length":
            case "count":
                args.Bind();
                return PyValue.Length(value);
            case "default":
            case "d":
                var d = args.Bind("default_value", "boolean");
                var useDefault = value is Undefined || (PyValue.IsTruthy(Or(d[1], false)) && !PyValue.IsTruthy(value));
                return useDefault ? Or(d[0], "") : value;
            case "list":
                args.Bind();
                return PyValue.Iterate(value);
            case "items":
                args.Bind();
                return value switch
                {
                    Undefined => new TemplateList(),
                    TemplateDict dict => new TemplateList(dict.Select(p => (object?)Tuple(p.Key, p.Value))),
                    _ => throw new TemplateRuntimeException("Can only get item pairs from a mapping."),
                };
            case "first":
                args.Bind();
                var firstItems = PyValue.Iterate(value);
                return firstItems.Count > 0 ? firstItems[0] : Undefined.WithHint("No first item, sequence was empty.");
            case "last":
                args.Bind();
                var lastItems = PyValue.Iterate(value);
                return lastItems.Count > 0 ? lastItems[^1] : Undefined.WithHint("No last item, sequence was empty.");
            case "reverse":
                args.Bind();
                if (value is string rs)
                    return (string)Slice(rs, null, null, -1L)!;
                var reversed = PyValue.Iterate(value);
                reversed.Reverse();
                return reversed;
            case "join":
                var j = args.Bind("d", "attribute");
                var joinItems = PyValue.Iterate(value);
                var attribute = Or(j[1], null);
                var separator = PyValue.ToStr(Or(j[0], ""));
                return string.Join(separator, joinItems.Select(x => PyValue.ToStr(attribute is null ? x : GetPath(x, attribute, null))));
            case "tojson":
                return ToJson(value, args);
            case "indent":
                return Indent(value, args);
            case "map":
                return Map(value, args);
            case "select":
            case "reject":
            case "selectattr":
            case "rejectattr":
                return SelectOrReject(value, args, keep: name is "select" or "selectattr", byAttribute: name.EndsWith("attr", StringComparison.Ordinal));
            case "int":
                var i = args.Bind("default", "base");
                return ToInt(value, Or(i[0], 0L), IsMissing(i[1]) ? 10 : (int)PyValue.ToLong(i[1]));
            case "float":
                return ToFloat(value, Or(args.Bind("default")[0], 0.0));
            case "abs":
                args.Bind();
                return value switch
                {
                    long l => (object)checked(Math.Abs(l)),
                    double dd => Math.Abs(dd),
                    bool b => b ? 1L : 0L,
                    _ => throw new TemplateRuntimeException($"bad operand type for abs(): '{PyValue.TypeName(value)}'"),
                };
            case "round":
                var rd = args.Bind("precision", "method");
                var precision = (int)PyValue.ToLong(Or(rd[0], 0L));
                var method = PyValue.ToStr(Or(rd[1], "common"));
                var number = PyValue.ToDouble(value);
                var scale = Math.Pow(10, precision);
                return method switch
                {
                    "common" => Math.Round(number, Math.Clamp(precision, 0, 15), MidpointRounding.ToEven),
                    "ceil" => Math.Ceiling(number * scale) / scale,
                    "floor" => Math.Floor(number * scale) / scale,
                    _ => throw new TemplateRuntimeException("method must be common, ceil or floor"),
                };
            case "sum":
                var s = args.Bind("attribute", "start");
                object? total = Or(s[1], 0L);
                foreach (var item in PyValue.Iterate(value))
                    total = TemplateOperators.Binary("+", total, IsMissing(s[0]) || s[0] is null ? item : GetPath(item, s[0], null));
                return total;
            case "min":
            case "max":
                var m = args.Bind("case_sensitive", "attribute");
                var candidates = SortKeyed(value, PyValue.IsTruthy(Or(m[0], false)), Or(m[1], null), descending: false);
                if (candidates.Count == 0)
                    return Undefined.WithHint($"No aggregated item, sequence was empty.");
                return name == "min" ? candidates[0] : candidates[^1];
            case "sort":
                var so = args.Bind("reverse", "case_sensitive", "attribute");
                return new TemplateList(SortKeyed(value, PyValue.IsTruthy(Or(so[1], false)), Or(so[2], null), PyValue.IsTruthy(Or(so[0], false))));
            case "unique":
                var u = args.Bind("case_sensitive", "attribute");
                var caseSensitive = PyValue.IsTruthy(Or(u[0], false));
                var uniqueAttribute = Or(u[1], null);
                var seen = new List<object?>();
                var unique = new TemplateList();
                foreach (var item in PyValue.Iterate(value))
                {
                    var key = SortKey(uniqueAttribute is null ? item : GetPath(item, uniqueAttribute, null), caseSensitive);
                    if (!seen.Exists(x => PyValue.AreEqual(x, key)))
                    {
                        seen.Add(key);
                        unique.Add(item);
                    }
                }
                return unique;
            case "attr":
                return GetAttribute(value, RequireString(args.Bind("name")[0], "attribute name"));
            case "escape":
            case "e":
                args.Bind();
                return HtmlEscape(PyValue.ToStr(value));
            default:
                throw new TemplateRuntimeException($"no filter named '{name}'");
        }
    }

    /// <summary>transformers' <c>tojson</c>: <c>json.dumps(x, ensure_ascii=False, indent, separators, sort_keys)</c>.</summary>
    private static string ToJson(object? value, CallArguments args)
    {
        var p = args.Bind("ensure_ascii", "indent", "separators", "sort_keys");
        var indent = Or(p[1], null) switch
        {
            null => null,
            string text => text,
            long or bool => new string(' ', (int)Math.Max(0, PyValue.ToLong(p[1]))),
            var other => throw new TemplateRuntimeException($"indent must be an int or a string, not {PyValue.TypeName(other)}"),
        };
        var itemSeparator = indent is null ? ", " : ",";
        var keySeparator = ": ";
        if (Or(p[2], null) is { } separators)
        {
            if (separators is not TemplateList { Count: 2 } pair || pair[0] is not string a || pair[1] is not string b)
                throw new TemplateRuntimeException("separators must be a pair of strings");
            (itemSeparator, keySeparator) = (a, b);
        }
        var options = new TemplateJson.Options(PyValue.IsTruthy(Or(p[0], false)), indent, itemSeparator, keySeparator, PyValue.IsTruthy(Or(p[3], false)));
        return TemplateJson.Dumps(value, options);
    }

    /// <summary>jinja2's <c>indent</c>: indents every line but the first (and blank lines only if asked).</summary>
    private static string Indent(object? value, CallArguments args)
    {
        var p = args.Bind("width", "first", "blank");
        if (value is Undefined u)
            throw new TemplateRuntimeException(u.Message);
        var text = value as string ?? throw new TemplateRuntimeException($"indent expects a string, not {PyValue.TypeName(value)}");
        var width = Or(p[0], 4L);
        var indentation = width is string w ? w : new string(' ', (int)Math.Max(0, PyValue.ToLong(width)));
        var lines = PyValue.SplitLines(text + "\n");
        string result;
        if (PyValue.IsTruthy(Or(p[2], false)))
        {
            result = string.Join("\n" + indentation, lines);
        }
        else
        {
            var sb = new StringBuilder(lines[0]);
            for (var i = 1; i < lines.Count; i++)
                sb.Append('\n').Append(lines[i].Length > 0 ? indentation + lines[i] : lines[i]);
            result = sb.ToString();
        }
        return PyValue.IsTruthy(Or(p[1], false)) ? indentation + result : result;
    }

    /// <summary>jinja2's attribute getter: <c>"a.b.0"</c> walks items, integers as indices.</summary>
    private static object? GetPath(object? item, object? path, object? fallback)
    {
        if (path is long or bool)
            return GetItem(item, path);
        var text = path as string ?? throw new TemplateRuntimeException("attribute name must be a string or an integer");
        foreach (var part in text.Split('.'))
        {
            object? key = long.TryParse(part, NumberStyles.None, CultureInfo.InvariantCulture, out var n) ? n : part;
            item = GetItem(item, key);
        }
        return fallback is not null && item is Undefined ? fallback : item;
    }

    private static TemplateList Map(object? value, CallArguments args)
    {
        var result = new TemplateList();
        if (!PyValue.IsTruthy(value))
            return result;
        var items = PyValue.Iterate(value);
        if (args.Positional.Count == 0)
        {
            var p = args.Bind("attribute", "default");
            if (IsMissing(p[0]))
                throw new TemplateRuntimeException("map requires a filter argument");
            foreach (var item in items)
                result.Add(GetPath(item, p[0], Or(p[1], null)));
            return result;
        }
        var filterName = RequireString(args.Positional[0], "map filter name");
        if (!FilterNames.Contains(filterName))
            throw new TemplateRuntimeException($"no filter named '{filterName}'");
        var rest = new CallArguments(args.Positional.Skip(1).ToList(), args.Named, filterName);
        foreach (var item in items)
            result.Add(ApplyFilter(filterName, item, rest));
        return result;
    }

    private static TemplateList SelectOrReject(object? value, CallArguments args, bool keep, bool byAttribute)
    {
        var result = new TemplateList();
        if (!PyValue.IsTruthy(value))
            return result;
        if (args.Named.Count > 0)
            throw new TemplateRuntimeException("keyword arguments to select/reject tests are not supported");
        var offset = byAttribute ? 1 : 0;
        if (byAttribute && args.Positional.Count == 0)
            throw new TemplateRuntimeException("Missing parameter for attribute name");
        string? test = null;
        if (args.Positional.Count > offset)
        {
            test = RequireString(args.Positional[offset], "test name");
            if (!TestNames.Contains(test))
                throw new TemplateRuntimeException($"no test named '{test}'");
        }
        var testArgs = args.Positional.Skip(offset + 1).ToList();
        foreach (var item in PyValue.Iterate(value))
        {
            var subject = byAttribute ? GetPath(item, args.Positional[0], null) : item;
            var passed = test is null ? PyValue.IsTruthy(subject) : RunTest(test, subject, testArgs);
            if (passed == keep)
                result.Add(item);
        }
        return result;
    }

    private static object? SortKey(object? value, bool caseSensitive) =>
        !caseSensitive && value is string s ? s.ToLowerInvariant() : value;

    private static List<object?> SortKeyed(object? value, bool caseSensitive, object? attribute, bool descending)
    {
        var items = PyValue.Iterate(value).Select(x => (Item: x, Key: SortKey(attribute is null ? x : GetPath(x, attribute, null), caseSensitive))).ToList();
        // List.Sort is not stable; Python's sort is, so sort (key, original position) pairs.
        var indexed = items.Select((p, i) => (p.Item, p.Key, Index: i)).ToList();
        indexed.Sort((a, b) =>
        {
            var c = PyValue.Compare(a.Key, b.Key, "<");
            if (descending)
                c = -c;
            return c != 0 ? c : a.Index.CompareTo(b.Index);
        });
        return indexed.Select(p => p.Item).ToList();
    }

    private static object? ToInt(object? value, object? fallback, int numberBase)
    {
        switch (value)
        {
            case long or bool:
                return PyValue.ToLong(value);
            case double d:
                return double.IsFinite(d) && Math.Abs(d) < 9.2e18 ? (long)d : fallback;
            case string s:
                var text = s.Trim().Replace("_", "", StringComparison.Ordinal);
                if (numberBase == 10 && long.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var l))
                    return l;
                if (numberBase == 16 && long.TryParse(text.StartsWith("0x", StringComparison.OrdinalIgnoreCase) ? text[2..] : text, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var h))
                    return h;
                if (double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var f) && double.IsFinite(f) && Math.Abs(f) < 9.2e18)
                    return (long)f;
                return fallback;
            default:
                return fallback;
        }
    }

    private static object? ToFloat(object? value, object? fallback) => value switch
    {
        double d => d,
        long or bool => PyValue.ToDouble(value),
        string s when double.TryParse(s.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out var f) => f,
        _ => fallback,
    };

    /// <summary>jinja2's <c>title</c> filter: capitalizes each run after spaces, dashes and opening brackets.</summary>
    private static string JinjaTitle(string s)
    {
        var sb = new StringBuilder(s.Length);
        var atWordStart = true;
        foreach (var c in s)
        {
            var separator = PyValue.IsSpace(c) || c is '-' or '(' or '{' or '[' or '<';
            if (separator)
                sb.Append(c);
            else
                sb.Append(atWordStart ? char.ToUpperInvariant(c) : char.ToLowerInvariant(c));
            atWordStart = separator;
        }
        return sb.ToString();
    }

    private static string HtmlEscape(string s) => s
        .Replace("&", "&amp;", StringComparison.Ordinal)
        .Replace("<", "&lt;", StringComparison.Ordinal)
        .Replace(">", "&gt;", StringComparison.Ordinal)
        .Replace("\"", "&#34;", StringComparison.Ordinal)
        .Replace("'", "&#39;", StringComparison.Ordinal);
}
