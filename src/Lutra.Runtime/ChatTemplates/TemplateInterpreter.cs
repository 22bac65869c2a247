using System.Text;

namespace Lutra.Runtime.ChatTemplates;

/// <summary>A variable scope: the render context, a for loop, or a macro call. <c>if</c> opens none, as in jinja2.</summary>
internal sealed class Scope(Scope? parent)
{
    private readonly Dictionary<string, object?> _variables = new(StringComparer.Ordinal);

    public bool TryGet(string name, out object? value)
    {
        for (var scope = this; scope is not null; scope = scope.Parent)
        {
            if (scope._variables.TryGetValue(name, out value))
                return true;
        }
        value = null;
        return false;
    }

    public void Set(string name, object? value) => _variables[name] = value;

    public Scope? Parent { get; } = parent;
}

/// <summary>Walks the syntax tree, writing output; errors carry the position of the node that failed.</summary>
internal sealed class TemplateInterpreter
{
    // Deep macro recursion would overflow the stack and kill the process; jinja2 would hit Python's limit.
    private const int MaxCallDepth = 256;

    // Keeps a hostile template from allocating without bound (e.g. 'x' * 10**12).
    internal const long MaxStringLength = 64L * 1024 * 1024;

    private enum Flow
    {
        Normal,
        Break,
        Continue,
    }

    private int _callDepth;

    public void Render(IReadOnlyList<Node> nodes, Scope scope, StringBuilder output) => Execute(nodes, scope, output);

    private Flow Execute(IReadOnlyList<Node> nodes, Scope scope, StringBuilder output)
    {
        foreach (var node in nodes)
        {
            var flow = ExecuteNode(node, scope, output);
            if (flow != Flow.Normal)
                return flow;
        }
        return Flow.Normal;
    }

    private Flow ExecuteNode(Node node, Scope scope, StringBuilder output)
    {
        switch (node)
        {
            case TextNode text:
                output.Append(text.Text);
                return Flow.Normal;
            case OutputNode o:
                var value = Eval(o.Value, scope);
                output.Append(PyValue.ToStr(value));
                if (output.Length > MaxStringLength)
                    throw new ChatTemplateException("rendered output is too large", o.Position);
                return Flow.Normal;
            case IfNode i:
                return Execute(PyValue.IsTruthy(Eval(i.Condition, scope)) ? i.Then : i.Else, scope, output);
            case ForNode f:
                ExecuteFor(f, scope, output);
                return Flow.Normal;
            case SetNode s:
                Assign(s.Target, Eval(s.Value, scope), scope);
                return Flow.Normal;
            case SetBlockNode sb:
                var captured = new StringBuilder();
                Execute(sb.Body, scope, captured);
                object? result = captured.ToString();
                foreach (var filter in sb.Filters)
                    result = ApplyFilter(filter, result, scope);
                Assign(sb.Target, result, scope);
                return Flow.Normal;
            case FilterBlockNode fb:
                var body = new StringBuilder();
                Execute(fb.Body, scope, body);
                object? filtered = body.ToString();
                foreach (var filter in fb.Filters)
                    filtered = ApplyFilter(filter, filtered, scope);
                output.Append(PyValue.ToStr(filtered));
                return Flow.Normal;
            case MacroNode m:
                scope.Set(m.Name, MakeMacro(m, scope));
                return Flow.Normal;
            case BreakNode:
                return Flow.Break;
            case ContinueNode:
                return Flow.Continue;
            default:
                throw new ChatTemplateException($"unsupported statement {node.GetType().Name}", node.Position);
        }
    }

    private void ExecuteFor(ForNode f, Scope scope, StringBuilder output)
    {
        var source = Guard(f.Iterable.Position, () => PyValue.Iterate(Eval(f.Iterable, scope)));
        TemplateList items;
        if (f.Filter is null)
        {
            items = source;
        }
        else
        {
            items = [];
            foreach (var item in source)
            {
                var filterScope = new Scope(scope);
                Assign(f.Target, item, filterScope);
                if (PyValue.IsTruthy(Eval(f.Filter, filterScope)))
                    items.Add(item);
            }
        }
        if (items.Count == 0)
        {
            Execute(f.Else, scope, output);
            return;
        }
        var loop = new LoopContext(items);
        for (var i = 0; i < items.Count; i++)
        {
            loop.Index0 = i;
            // Each iteration starts from the enclosing values: jinja2 does not carry a `set` inside the
            // body over to the next iteration (use a namespace for that).
            var loopScope = new Scope(scope);
            loopScope.Set("loop", loop);
            Assign(f.Target, items[i], loopScope);
            if (Execute(f.Body, loopScope, output) == Flow.Break)
                break;
        }
    }

    private void Assign(Target target, object? value, Scope scope)
    {
        switch (target)
        {
            case NameTarget n:
                scope.Set(n.Name, value);
                break;
            case AttributeTarget a:
                if (!scope.TryGet(a.Name, out var owner) || owner is not TemplateNamespace ns)
                    throw new ChatTemplateException($"cannot assign attribute '{a.Attribute}' on non-namespace object '{a.Name}'", a.Position);
                ns.Attributes[a.Attribute] = value;
                break;
            case TupleTarget t:
                var items = Guard(t.Position, () => PyValue.Iterate(value));
                if (items.Count != t.Items.Count)
                {
                    var problem = items.Count < t.Items.Count ? "not enough" : "too many";
                    throw new ChatTemplateException($"{problem} values to unpack (expected {t.Items.Count}, got {items.Count})", t.Position);
                }
                for (var i = 0; i < items.Count; i++)
                    Assign(t.Items[i], items[i], scope);
                break;
        }
    }

    private TemplateFunction MakeMacro(MacroNode m, Scope definitionScope) => new(m.Name, args =>
    {
        if (args.Positional.Count > m.Parameters.Count)
            throw new TemplateRuntimeException($"macro '{m.Name}' takes not more than {m.Parameters.Count} argument(s)");
        if (_callDepth >= MaxCallDepth)
            throw new TemplateRuntimeException($"macro '{m.Name}': maximum recursion depth exceeded");
        var callScope = new Scope(definitionScope);
        var bound = new bool[m.Parameters.Count];
        for (var i = 0; i < args.Positional.Count; i++)
        {
            callScope.Set(m.Parameters[i], args.Positional[i]);
            bound[i] = true;
        }
        foreach (var (name, value) in args.Named)
        {
            var index = IndexOf(m.Parameters, name);
            if (index < 0)
                throw new TemplateRuntimeException($"macro '{m.Name}' takes no keyword argument '{name}'");
            if (bound[index])
                throw new TemplateRuntimeException($"macro '{m.Name}' got multiple values for argument '{name}'");
            callScope.Set(name, value);
            bound[index] = true;
        }
        for (var i = 0; i < m.Parameters.Count; i++)
        {
            if (!bound[i])
                callScope.Set(m.Parameters[i], m.Defaults[i] is { } d ? Eval(d, callScope) : Undefined.Named(m.Parameters[i]));
        }
        var output = new StringBuilder();
        _callDepth++;
        try
        {
            Execute(m.Body, callScope, output);
        }
        finally
        {
            _callDepth--;
        }
        return output.ToString();
    });

    private static int IndexOf(IReadOnlyList<string> items, string value)
    {
        for (var i = 0; i < items.Count; i++)
        {
            if (items[i] == value)
                return i;
        }
        return -1;
    }

    /// <summary>Runs a step that may raise a position-less error and attaches the node's position.</summary>
    private static T Guard<T>(SourcePosition position, Func<T> step)
    {
        try
        {
            return step();
        }
        catch (TemplateRuntimeException e)
        {
            throw new ChatTemplateException(e.Message, position);
        }
    }

    public object? Eval(Expr expr, Scope scope)
    {
        switch (expr)
        {
            case LiteralExpr l:
                return l.Value;
            case NameExpr n:
                return scope.TryGet(n.Name, out var value) ? value : Undefined.Named(n.Name);
            case ListExpr list:
                var items = new TemplateList { IsTuple = list.IsTuple };
                foreach (var item in list.Items)
                    items.Add(Eval(item, scope));
                return items;
            case DictExpr d:
                var dict = new TemplateDict();
                foreach (var (k, v) in d.Items)
                {
                    var key = Eval(k, scope);
                    if (key is null || !PyValue.IsHashable(key))
                        throw new ChatTemplateException($"unhashable dict key of type '{PyValue.TypeName(key)}'", k.Position);
                    dict[key] = Eval(v, scope);
                }
                return dict;
            case AttributeExpr a:
                var owner = Eval(a.Target, scope);
                return Guard(a.Position, () => TemplateBuiltins.GetAttribute(owner, a.Name));
            case SubscriptExpr s:
                var container = Eval(s.Target, scope);
                if (s.Index is SliceExpr slice)
                {
                    var start = slice.Start is null ? null : Eval(slice.Start, scope);
                    var stop = slice.Stop is null ? null : Eval(slice.Stop, scope);
                    var step = slice.Step is null ? null : Eval(slice.Step, scope);
                    return Guard(s.Position, () => TemplateBuiltins.Slice(container, start, stop, step));
                }
                var index = Eval(s.Index, scope);
                return Guard(s.Position, () => TemplateBuiltins.GetItem(container, index));
            case CallExpr c:
                var callee = Eval(c.Callee, scope);
                var args = EvalArguments(c.Args, c.Kwargs, scope, CalleeName(c.Callee));
                return Guard(c.Position, () => callee switch
                {
                    TemplateFunction f => f.Invoke(args),
                    Undefined u => throw new TemplateRuntimeException(u.Message),
                    _ => throw new TemplateRuntimeException($"'{PyValue.TypeName(callee)}' object is not callable"),
                });
            case FilterExpr f:
                return ApplyFilter(f.Filter, Eval(f.Value, scope), scope);
            case TestExpr t:
                var subject = Eval(t.Value, scope);
                var testArgs = new List<object?>(t.Args.Count);
                foreach (var arg in t.Args)
                    testArgs.Add(Eval(arg, scope));
                var passed = Guard(t.Position, () => TemplateBuiltins.RunTest(t.Name, subject, testArgs));
                return passed != t.Negated;
            case UnaryExpr u:
                var operand = Eval(u.Operand, scope);
                return u.Operator == "not"
                    ? !PyValue.IsTruthy(operand)
                    : Guard(u.Position, () => TemplateOperators.Unary(u.Operator, operand));
            case BinaryExpr b:
                return EvalBinary(b, scope);
            case CompareExpr c:
                var left = Eval(c.First, scope);
                foreach (var (op, operandExpr) in c.Rest)
                {
                    var right = Eval(operandExpr, scope);
                    if (!Guard(operandExpr.Position, () => TemplateOperators.Compare(op, left, right)))
                        return false;
                    left = right;
                }
                return true;
            case ConcatExpr concat:
                var sb = new StringBuilder();
                foreach (var part in concat.Parts)
                    sb.Append(PyValue.ToStr(Eval(part, scope)));
                return sb.ToString();
            case ConditionalExpr cond:
                if (PyValue.IsTruthy(Eval(cond.Condition, scope)))
                    return Eval(cond.Then, scope);
                return cond.Else is null ? Undefined.WithHint("the inline if-expression evaluated to false and no else section was defined") : Eval(cond.Else, scope);
            case SliceExpr s:
                throw new ChatTemplateException("a slice is only valid inside '[ ]'", s.Position);
            default:
                throw new ChatTemplateException($"unsupported expression {expr.GetType().Name}", expr.Position);
        }
    }

    private static string CalleeName(Expr callee) => callee switch
    {
        NameExpr n => n.Name,
        AttributeExpr a => a.Name,
        _ => "function",
    };

    private object? EvalBinary(BinaryExpr b, Scope scope)
    {
        var left = Eval(b.Left, scope);
        switch (b.Operator)
        {
            case "and":
                return PyValue.IsTruthy(left) ? Eval(b.Right, scope) : left;
            case "or":
                return PyValue.IsTruthy(left) ? left : Eval(b.Right, scope);
            default:
                var right = Eval(b.Right, scope);
                return Guard(b.Position, () => TemplateOperators.Binary(b.Operator, left, right));
        }
    }

    private CallArguments EvalArguments(IReadOnlyList<Expr> args, IReadOnlyList<(string Name, Expr Value)> kwargs, Scope scope, string callee)
    {
        var positional = new List<object?>(args.Count);
        foreach (var arg in args)
            positional.Add(Eval(arg, scope));
        var named = new List<(string, object?)>(kwargs.Count);
        foreach (var (name, value) in kwargs)
            named.Add((name, Eval(value, scope)));
        return new CallArguments(positional, named, callee);
    }

    private object? ApplyFilter(FilterCall filter, object? value, Scope scope)
    {
        var args = EvalArguments(filter.Args, filter.Kwargs, scope, filter.Name);
        return Guard(filter.Position, () => TemplateBuiltins.ApplyFilter(filter.Name, value, args));
    }
}
