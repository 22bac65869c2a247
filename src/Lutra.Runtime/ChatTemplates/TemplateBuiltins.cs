using System.Globalization;
using System.Text;

namespace Lutra.Runtime.ChatTemplates;

/// <summary>
/// Attribute and item access, the filters, tests and methods jinja2 (in its immutable sandbox) offers to
/// chat templates. Names not listed here are rejected when the template is parsed.
/// </summary>
internal static partial class TemplateBuiltins
{
    public static readonly HashSet<string> FilterNames =
    [
        "abs", "attr", "capitalize", "count", "d", "default", "e", "escape", "first", "float", "indent", "int",
        "items", "join", "last", "length", "list", "lower", "map", "max", "min", "reject", "rejectattr", "replace",
        "reverse", "round", "safe", "select", "selectattr", "sort", "string", "sum", "title", "tojson", "trim",
        "unique", "upper",
    ];

    public static readonly HashSet<string> TestNames =
    [
        "boolean", "callable", "defined", "divisibleby", "eq", "equalto", "escaped", "even", "false", "float", "ge",
        "gt", "greaterthan", "in", "integer", "iterable", "le", "lessthan", "lower", "lt", "mapping", "ne", "none",
        "number", "odd", "sameas", "sequence", "string", "true", "undefined", "upper", "==", "!=", "<", "<=", ">", ">=",
    ];

    private static readonly HashSet<string> UnsafeListMethods = ["append", "clear", "extend", "insert", "pop", "remove", "reverse", "sort"];

    private static readonly HashSet<string> UnsafeDictMethods = ["clear", "pop", "popitem", "setdefault", "update"];

    // ---- attribute and item access (jinja2 sandbox getattr / getitem) ----

    public static object? GetAttribute(object? owner, string name)
    {
        switch (owner)
        {
            case Undefined u:
                throw new TemplateRuntimeException(u.Message);
            case TemplateDict dict:
                if (UnsafeDictMethods.Contains(name))
                    return Unsafe(owner, name);
                return DictMethod(dict, name) ?? (dict.TryGetValue(name, out var v) ? v : Undefined.MissingMember(owner, name));
            case string s:
                return (object?)StringMethod(s, name) ?? Undefined.MissingMember(owner, name);
            case TemplateList list:
                if (UnsafeListMethods.Contains(name) && !list.IsTuple)
                    return Unsafe(owner, name);
                return (object?)ListMethod(list, name) ?? Undefined.MissingMember(owner, name);
            case TemplateNamespace ns:
                return ns.Attributes.TryGetValue(name, out var attr) ? attr : Undefined.MissingMember(owner, name);
            case LoopContext loop:
                return loop.Get(name);
            default:
                return Undefined.MissingMember(owner, name);
        }
    }

    private static Undefined Unsafe(object owner, string name) =>
        Undefined.WithHint($"access to attribute '{name}' of '{PyValue.TypeName(owner)}' object is unsafe");

    public static object? GetItem(object? container, object? key)
    {
        switch (container)
        {
            case Undefined u:
                throw new TemplateRuntimeException(u.Message);
            case TemplateDict dict when key is not null && PyValue.IsHashable(key) && dict.TryGetValue(key, out var value):
                return value;
            case TemplateList list when key is long or bool:
                var i = PyValue.ToLong(key);
                if (i < 0)
                    i += list.Count;
                if (i >= 0 && i < list.Count)
                    return list[(int)i];
                break;
            case string s when key is long or bool:
                var chars = PyValue.HasSurrogates(s) ? PyValue.CodePoints(s) : null;
                var count = chars?.Count ?? s.Length;
                var j = PyValue.ToLong(key);
                if (j < 0)
                    j += count;
                if (j >= 0 && j < count)
                    return chars is null ? s[(int)j].ToString() : chars[(int)j];
                break;
        }
        return key is string name && container is not TemplateDict ? GetAttribute(container, name)
            : key is string dictKey && container is TemplateDict d ? ((object?)DictMethod(d, dictKey) ?? Undefined.MissingMember(container, dictKey))
            : Undefined.MissingMember(container, key);
    }

    public static object? Slice(object? container, object? start, object? stop, object? step)
    {
        if (container is Undefined u)
            throw new TemplateRuntimeException(u.Message);
        List<object?> items;
        string? text = null;
        switch (container)
        {
            case TemplateList list:
                items = list;
                break;
            case string s:
                text = s;
                items = PyValue.HasSurrogates(s) ? PyValue.CodePoints(s) : [];
                break;
            default:
                throw new TemplateRuntimeException($"'{PyValue.TypeName(container)}' object is not subscriptable");
        }
        var length = text is not null && items.Count == 0 ? text.Length : items.Count;
        var stepValue = step is null ? 1 : PyValue.ToLong(step);
        if (stepValue == 0)
            throw new TemplateRuntimeException("slice step cannot be zero");
        var (from, to) = SliceBounds(start, stop, stepValue, length);
        var indices = new List<int>();
        for (var i = from; stepValue > 0 ? i < to : i > to; i += stepValue)
            indices.Add((int)i);
        if (text is not null)
        {
            var sb = new StringBuilder();
            foreach (var i in indices)
            {
                if (items.Count == 0)
                    sb.Append(text[i]);
                else
                    sb.Append((string?)items[i]);
            }
            return sb.ToString();
        }
        var result = new TemplateList { IsTuple = ((TemplateList)container).IsTuple };
        foreach (var i in indices)
            result.Add(items[i]);
        return result;
    }

    private static (long From, long To) SliceBounds(object? start, object? stop, long step, long length)
    {
        long Clamp(object? bound, long defaultValue, long low, long high)
        {
            if (bound is null)
                return defaultValue;
            var v = PyValue.ToLong(bound);
            if (v < 0)
                v += length;
            return Math.Clamp(v, low, high);
        }
        return step > 0
            ? (Clamp(start, 0, 0, length), Clamp(stop, length, 0, length))
            : (Clamp(start, length - 1, -1, length - 1), Clamp(stop, -1, -1, length - 1));
    }

    // ---- methods of Python values ----

    private static TemplateFunction Method(string name, Func<CallArguments, object?> body) => new(name, body);

    private static TemplateFunction? DictMethod(TemplateDict dict, string name) => name switch
    {
        "items" => Method(name, a =>
        {
            a.Bind();
            return new TemplateList(dict.Select(p => (object?)Tuple(p.Key, p.Value)));
        }),
        "keys" => Method(name, a =>
        {
            a.Bind();
            return new TemplateList(dict.Keys);
        }),
        "values" => Method(name, a =>
        {
            a.Bind();
            return new TemplateList(dict.Values);
        }),
        "get" => Method(name, a =>
        {
            var p = a.Bind("key", "default");
            var key = p[0];
            if (ReferenceEquals(key, CallArguments.Missing))
                throw new TemplateRuntimeException("get() takes at least 1 argument");
            var fallback = ReferenceEquals(p[1], CallArguments.Missing) ? null : p[1];
            return key is not null && PyValue.IsHashable(key) && dict.TryGetValue(key, out var v) ? v : fallback;
        }),
        "copy" => Method(name, a =>
        {
            a.Bind();
            var copy = new TemplateDict();
            foreach (var (k, v) in dict)
                copy[k] = v;
            return copy;
        }),
        _ => null,
    };

    private static TemplateFunction? ListMethod(TemplateList list, string name) => name switch
    {
        "index" => Method(name, a =>
        {
            var p = a.Bind("value");
            var i = list.FindIndex(x => PyValue.AreEqual(x, p[0]));
            return i >= 0 ? (long)i : throw new TemplateRuntimeException($"{PyValue.Repr(p[0])} is not in list");
        }),
        "count" => Method(name, a =>
        {
            var p = a.Bind("value");
            return (long)list.Count(x => PyValue.AreEqual(x, p[0]));
        }),
        _ => null,
    };

    internal static TemplateList Tuple(params object?[] items) => new(items) { IsTuple = true };

    private static string? OptionalString(object? value, string what) => value switch
    {
        _ when ReferenceEquals(value, CallArguments.Missing) => null,
        null => null,
        string s => s,
        _ => throw new TemplateRuntimeException($"{what} arg must be None or str"),
    };

    private static string RequireString(object? value, string what) =>
        value as string ?? throw new TemplateRuntimeException($"{what} must be str, not {PyValue.TypeName(value)}");

    private static TemplateFunction? StringMethod(string s, string name) => name switch
    {
        "strip" or "lstrip" or "rstrip" => Method(name, a =>
        {
            var chars = OptionalString(a.Bind("chars")[0], name);
            return PyValue.Strip(s, chars, name != "rstrip", name != "lstrip");
        }),
        "split" or "rsplit" => Method(name, a =>
        {
            var p = a.Bind("sep", "maxsplit");
            var sep = OptionalString(p[0], "sep");
            var max = ReferenceEquals(p[1], CallArguments.Missing) ? -1 : PyValue.ToLong(p[1]);
            return Split(s, sep, max, fromRight: name == "rsplit");
        }),
        "startswith" or "endswith" => Method(name, a =>
        {
            var p = a.Bind("prefix");
            var candidates = p[0] is TemplateList { IsTuple: true } t ? t : [p[0]];
            foreach (var c in candidates)
            {
                var affix = RequireString(c, name + " argument");
                if (name == "startswith" ? s.StartsWith(affix, StringComparison.Ordinal) : s.EndsWith(affix, StringComparison.Ordinal))
                    return true;
            }
            return false;
        }),
        "upper" => Method(name, a =>
        {
            a.Bind();
            return PyValue.Upper(s);
        }),
        "lower" => Method(name, a =>
        {
            a.Bind();
            return s.ToLowerInvariant();
        }),
        "title" => Method(name, a =>
        {
            a.Bind();
            return PythonTitle(s);
        }),
        "capitalize" => Method(name, a =>
        {
            a.Bind();
            return Capitalize(s);
        }),
        "replace" => Method(name, a =>
        {
            var p = a.Bind("old", "new", "count");
            var count = ReferenceEquals(p[2], CallArguments.Missing) ? -1 : PyValue.ToLong(p[2]);
            return Replace(s, RequireString(p[0], "replace() argument 1"), RequireString(p[1], "replace() argument 2"), count);
        }),
        "find" or "rfind" or "index" or "rindex" => Method(name, a =>
        {
            var sub = RequireString(a.Bind("sub")[0], name + "() argument");
            var i = name is "find" or "index" ? s.IndexOf(sub, StringComparison.Ordinal) : s.LastIndexOf(sub, StringComparison.Ordinal);
            if (i < 0 && name is "index" or "rindex")
                throw new TemplateRuntimeException("substring not found");
            return i < 0 ? -1L : PyValue.CodePointCount(s[..i]);
        }),
        "count" => Method(name, a =>
        {
            var sub = RequireString(a.Bind("sub")[0], "count() argument");
            if (sub.Length == 0)
                return PyValue.CodePointCount(s) + 1;
            long n = 0;
            for (var i = s.IndexOf(sub, StringComparison.Ordinal); i >= 0; i = s.IndexOf(sub, i + sub.Length, StringComparison.Ordinal))
                n++;
            return n;
        }),
        "join" => Method(name, a =>
        {
            var items = PyValue.Iterate(a.Bind("iterable")[0]);
            return string.Join(s, items.Select(x => x as string
                ?? throw new TemplateRuntimeException($"sequence item: expected str instance, {PyValue.TypeName(x)} found")));
        }),
        "splitlines" => Method(name, a =>
        {
            a.Bind();
            return new TemplateList(PyValue.SplitLines(s));
        }),
        "isdigit" or "isalpha" or "isalnum" or "isspace" or "isupper" or "islower" => Method(name, a =>
        {
            a.Bind();
            return CharacterClass(s, name);
        }),
        _ => null,
    };

    private static bool CharacterClass(string s, string name)
    {
        if (s.Length == 0)
            return false;
        return name switch
        {
            "isdigit" => s.All(char.IsDigit),
            "isalpha" => s.All(char.IsLetter),
            "isalnum" => s.All(char.IsLetterOrDigit),
            "isspace" => s.All(PyValue.IsSpace),
            "isupper" => s.Any(char.IsLetter) && !s.Any(char.IsLower),
            _ => s.Any(char.IsLetter) && !s.Any(char.IsUpper),
        };
    }

    private static TemplateList Split(string s, string? sep, long max, bool fromRight)
    {
        var parts = new List<string>();
        if (sep is null)
        {
            var words = new List<(int Start, int End)>();
            for (var i = 0; i < s.Length;)
            {
                while (i < s.Length && PyValue.IsSpace(s[i]))
                    i++;
                var start = i;
                while (i < s.Length && !PyValue.IsSpace(s[i]))
                    i++;
                if (i > start)
                    words.Add((start, i));
            }
            if (max < 0 || words.Count <= max + 1)
                return new TemplateList(words.Select(w => (object?)s[w.Start..w.End]));
            if (fromRight)
            {
                var keep = words.Skip(words.Count - (int)max).ToList();
                var head = PyValue.Strip(s[..keep[0].Start], null, left: true, right: true);
                return new TemplateList(new[] { head }.Concat(keep.Select(w => s[w.Start..w.End])));
            }
            var taken = words.Take((int)max).Select(w => s[w.Start..w.End]).ToList();
            taken.Add(PyValue.Strip(s[words[(int)max].Start..], null, left: true, right: true));
            return new TemplateList(taken);
        }
        if (sep.Length == 0)
            throw new TemplateRuntimeException("empty separator");
        if (!fromRight)
        {
            var start = 0;
            while (max < 0 || parts.Count < max)
            {
                var i = s.IndexOf(sep, start, StringComparison.Ordinal);
                if (i < 0)
                    break;
                parts.Add(s[start..i]);
                start = i + sep.Length;
            }
            parts.Add(s[start..]);
            return new TemplateList(parts);
        }
        var end = s.Length;
        while (max < 0 || parts.Count < max)
        {
            var i = end - sep.Length < 0 ? -1 : s.LastIndexOf(sep, end - sep.Length, StringComparison.Ordinal);
            if (i < 0)
                break;
            parts.Add(s[(i + sep.Length)..end]);
            end = i;
        }
        parts.Add(s[..end]);
        parts.Reverse();
        return new TemplateList(parts);
    }

    private static string Replace(string s, string old, string replacement, long count)
    {
        if (count < 0)
        {
            if (old.Length == 0)
                return replacement + string.Join(replacement, PyValue.CodePoints(s)) + (s.Length > 0 ? replacement : "");
            return s.Replace(old, replacement, StringComparison.Ordinal);
        }
        var sb = new StringBuilder();
        var start = 0;
        for (var n = 0; n < count; n++)
        {
            var i = s.IndexOf(old, start, StringComparison.Ordinal);
            if (i < 0 || old.Length == 0)
                break;
            sb.Append(s, start, i - start).Append(replacement);
            start = i + old.Length;
        }
        return sb.Append(s, start, s.Length - start).ToString();
    }

    private static string Capitalize(string s) =>
        s.Length == 0 ? s : char.ToUpperInvariant(s[0]) + s[1..].ToLowerInvariant();

    /// <summary>Python's <c>str.title()</c>: a letter after a non-letter is upper-cased, others lower-cased.</summary>
    private static string PythonTitle(string s)
    {
        var sb = new StringBuilder(s.Length);
        var previousCased = false;
        foreach (var c in s)
        {
            sb.Append(previousCased ? char.ToLowerInvariant(c) : char.ToUpperInvariant(c));
            previousCased = char.IsLetter(c);
        }
        return sb.ToString();
    }

    // ---- tests ----

    public static bool RunTest(string name, object? value, IReadOnlyList<object?> args)
    {
        object? Arg(int i) => i < args.Count ? args[i] : throw new TemplateRuntimeException($"test '{name}' needs an argument");
        return name switch
        {
            "defined" => value is not Undefined,
            "undefined" => value is Undefined,
            "none" => value is null,
            "string" => value is string,
            "mapping" => value is TemplateDict,
            "iterable" => PyValue.IsIterable(value),
            "sequence" => value is string or TemplateList or TemplateDict or Undefined,
            "number" => PyValue.IsNumber(value),
            "integer" => value is long,
            "float" => value is double,
            "boolean" => value is bool,
            "true" => value is true,
            "false" => value is false,
            "callable" => value is TemplateFunction,
            "escaped" => false,
            "lower" => value is string s && s == s.ToLowerInvariant(),
            "upper" => value is string u && u == u.ToUpperInvariant(),
            "odd" => PyValue.ToLong(value) % 2 != 0,
            "even" => PyValue.ToLong(value) % 2 == 0,
            "divisibleby" => PyValue.ToLong(Arg(0)) != 0 && PyValue.ToLong(value) % PyValue.ToLong(Arg(0)) == 0,
            "eq" or "equalto" or "==" => PyValue.AreEqual(value, Arg(0)),
            "ne" or "!=" => !PyValue.AreEqual(value, Arg(0)),
            "lt" or "lessthan" or "<" => PyValue.Compare(value, Arg(0), "<") < 0,
            "le" or "<=" => PyValue.Compare(value, Arg(0), "<=") <= 0,
            "gt" or "greaterthan" or ">" => PyValue.Compare(value, Arg(0), ">") > 0,
            "ge" or ">=" => PyValue.Compare(value, Arg(0), ">=") >= 0,
            "in" => PyValue.Contains(Arg(0), value),
            "sameas" => IsSame(value, Arg(0)),
            _ => throw new TemplateRuntimeException($"no test named '{name}'"),
        };
    }

    private static bool IsSame(object? a, object? b) => (a, b) switch
    {
        (null, null) => true,
        (bool x, bool y) => x == y,
        (long x, long y) => x == y,
        // CPython interns the short strings templates compare, so `is` sees equal literals as the same object.
        (string x, string y) => x == y,
        _ => ReferenceEquals(a, b),
    };
}
