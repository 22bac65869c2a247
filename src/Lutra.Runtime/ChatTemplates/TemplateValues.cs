using System.Runtime.CompilerServices;

namespace Lutra.Runtime.ChatTemplates;

// The template object model mirrors the Python values jinja2 works on:
// null = None, bool, long = int, double = float, string = str, TemplateList = list/tuple,
// TemplateDict = dict (insertion-ordered), TemplateNamespace = namespace(), TemplateFunction = callables,
// LoopContext = `loop`, Undefined = jinja2's default Undefined.

/// <summary>
/// jinja2's default <c>Undefined</c>: prints as empty, is falsy, iterates as empty and has length 0,
/// but attribute access, arithmetic, ordering comparisons and calls on it raise an error.
/// </summary>
internal sealed class Undefined
{
    private readonly string? _name;
    private readonly object? _owner;
    private readonly bool _hasOwner;
    private readonly string? _hint;

    private Undefined(string? name, object? owner, bool hasOwner, string? hint)
    {
        _name = name;
        _owner = owner;
        _hasOwner = hasOwner;
        _hint = hint;
    }

    public static Undefined Named(string name) => new(name, null, false, null);

    public static Undefined MissingMember(object? owner, object? key) =>
        new(key as string ?? PyValue.Repr(key), owner, true, key is string ? null : "element");

    public static Undefined WithHint(string hint) => new(null, null, false, hint);

    /// <summary>The message jinja2's <c>UndefinedError</c> would carry for this value.</summary>
    public string Message
    {
        get
        {
            if (!_hasOwner)
                return _name is null ? _hint ?? "value is undefined" : $"'{_name}' is undefined";
            var ownerText = _owner is null ? "None" : $"'{PyValue.TypeName(_owner)} object'";
            return _hint == "element" ? $"{ownerText} has no element {_name}" : $"{ownerText} has no attribute '{_name}'";
        }
    }
}

internal sealed class TemplateList : List<object?>
{
    public TemplateList()
    {
    }

    public TemplateList(IEnumerable<object?> items)
        : base(items)
    {
    }

    /// <summary>True for Python tuples (only the repr differs).</summary>
    public bool IsTuple { get; init; }
}

/// <summary>A Python dict: insertion-ordered, keys compared with Python equality (1 == 1.0 == True).</summary>
internal sealed class TemplateDict : OrderedDictionary<object, object?>
{
    public TemplateDict()
        : base(PyKeyComparer.Instance)
    {
    }
}

internal sealed class PyKeyComparer : IEqualityComparer<object>
{
    public static readonly PyKeyComparer Instance = new();

    public new bool Equals(object? x, object? y) => PyValue.AreEqual(x, y);

    public int GetHashCode(object obj) => obj switch
    {
        string s => string.GetHashCode(s, StringComparison.Ordinal),
        bool b => (b ? 1.0 : 0.0).GetHashCode(),
        long l => ((double)l).GetHashCode(),
        double d => d.GetHashCode(),
        _ => RuntimeHelpers.GetHashCode(obj),
    };
}

/// <summary>jinja2's <c>namespace()</c>: the one object whose attributes a template may assign.</summary>
internal sealed class TemplateNamespace
{
    public Dictionary<string, object?> Attributes { get; } = new(StringComparer.Ordinal);
}

internal sealed class TemplateFunction(string name, Func<CallArguments, object?> invoke)
{
    public string Name { get; } = name;

    public object? Invoke(CallArguments args) => invoke(args);
}

/// <summary>The arguments of one call, with Python-style binding of positional and keyword arguments.</summary>
internal sealed class CallArguments(IReadOnlyList<object?> positional, IReadOnlyList<(string Name, object? Value)> named, string callee)
{
    public IReadOnlyList<object?> Positional { get; } = positional;

    public IReadOnlyList<(string Name, object? Value)> Named { get; } = named;

    public string Callee { get; } = callee;

    /// <summary>
    /// Binds arguments to the parameter list of a builtin; rejects too many or unknown arguments.
    /// Parameters not given come back as <see cref="Missing"/>.
    /// </summary>
    public object?[] Bind(params string[] parameters)
    {
        if (Positional.Count > parameters.Length)
            throw new TemplateRuntimeException($"{Callee}() takes at most {parameters.Length} argument(s) ({Positional.Count} given)");
        var bound = new object?[parameters.Length];
        Array.Fill(bound, Missing);
        for (var i = 0; i < Positional.Count; i++)
            bound[i] = Positional[i];
        foreach (var (name, value) in Named)
        {
            var index = Array.IndexOf(parameters, name);
            if (index < 0)
                throw new TemplateRuntimeException($"{Callee}() got an unexpected keyword argument '{name}'");
            if (!ReferenceEquals(bound[index], Missing))
                throw new TemplateRuntimeException($"{Callee}() got multiple values for argument '{name}'");
            bound[index] = value;
        }
        return bound;
    }

    /// <summary>Marks a parameter that was not passed.</summary>
    public static readonly object Missing = new();
}

/// <summary>The <c>loop</c> variable inside a for loop.</summary>
internal sealed class LoopContext(TemplateList items)
{
    public int Index0 { get; set; }

    public object? Get(string name) => name switch
    {
        "index" => (long)Index0 + 1,
        "index0" => (long)Index0,
        "revindex" => (long)(items.Count - Index0),
        "revindex0" => (long)(items.Count - Index0 - 1),
        "first" => Index0 == 0,
        "last" => Index0 == items.Count - 1,
        "length" => (long)items.Count,
        "depth" => 1L,
        "depth0" => 0L,
        "previtem" => Index0 > 0 ? items[Index0 - 1] : Undefined.WithHint("there is no previous item"),
        "nextitem" => Index0 < items.Count - 1 ? items[Index0 + 1] : Undefined.WithHint("there is no next item"),
        "cycle" => new TemplateFunction("loop.cycle", args =>
        {
            if (args.Positional.Count == 0)
                throw new TemplateRuntimeException("no items for cycling given");
            return args.Positional[Index0 % args.Positional.Count];
        }),
        _ => Undefined.MissingMember(this, name),
    };
}

/// <summary>An error raised while evaluating; the interpreter adds the source position.</summary>
internal sealed class TemplateRuntimeException : Exception
{
    public TemplateRuntimeException()
    {
    }

    public TemplateRuntimeException(string message)
        : base(message)
    {
    }

    public TemplateRuntimeException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}
