using System.Globalization;

namespace Lutra.Runtime.ChatTemplates;

/// <summary>
/// Recursive-descent parser over <see cref="TemplateLexer"/> tokens. The grammar and operator
/// precedence follow jinja2's parser (or &lt; and &lt; not &lt; comparisons &lt; + - &lt; ~ &lt; * / // %
/// &lt; ** &lt; unary &lt; postfix, filters and tests), so expressions group the way they do in Python.
/// </summary>
internal sealed class TemplateParser
{
    private static readonly HashSet<string> UnsupportedTags =
        ["raw", "call", "include", "import", "from", "extends", "block", "with", "autoescape", "do", "trans"];

    private static readonly HashSet<string> ComparisonOperators = ["==", "!=", "<", "<=", ">", ">="];

    // Nesting beyond this would risk overflowing the stack (a crash, not an error) here or in the interpreter.
    private const int MaxNesting = 500;

    private readonly List<Token> _tokens;
    private int _index;
    private int _loopDepth;
    private int _nesting;

    // jinja2 reports an unknown filter or test when compiling, except inside an if statement or an inline
    // if-expression ("soft" code), where it waits until the expression runs. Unknown names seen outside soft
    // code wait here until the enclosing expression is known not to be an inline if.
    private readonly List<ChatTemplateException> _pendingUnknown = [];
    private bool _soft;

    private TemplateParser(List<Token> tokens) => _tokens = tokens;

    public static IReadOnlyList<Node> Parse(string source)
    {
        var parser = new TemplateParser(TemplateLexer.Tokenize(source));
        var (body, _) = parser.ParseBody([]);
        return body;
    }

    private Token Current => _tokens[_index];

    private Token Peek(int ahead = 1) => _tokens[Math.Min(_index + ahead, _tokens.Count - 1)];

    private Token Next() => _tokens[_index < _tokens.Count - 1 ? _index++ : _index];

    private static ChatTemplateException Error(string message, Token at) => new(message, at.Position);

    private Token Expect(TokenKind kind, string? value = null)
    {
        var token = Current;
        if (token.Kind != kind || (value is not null && token.Value != value))
        {
            var wanted = value is not null ? $"'{value}'" : kind switch
            {
                TokenKind.BlockEnd => "'%}'",
                TokenKind.VariableEnd => "'}}'",
                TokenKind.Name => "a name",
                _ => kind.ToString(),
            };
            throw Error($"expected {wanted} but found {token}", token);
        }
        return Next();
    }

    private bool SkipOperator(string op)
    {
        if (!Current.IsOperator(op))
            return false;
        Next();
        return true;
    }

    private bool SkipName(string name)
    {
        if (!Current.IsName(name))
            return false;
        Next();
        return true;
    }

    /// <summary>Parses nodes until a block tag named in <paramref name="endTags"/>; consumes that tag's name.</summary>
    private (List<Node> Body, string? EndTag) ParseBody(string[] endTags)
    {
        var body = new List<Node>();
        while (true)
        {
            var token = Current;
            switch (token.Kind)
            {
                case TokenKind.EndOfTemplate:
                    if (endTags.Length > 0)
                        throw Error($"unexpected end of template: missing '{{% {endTags[0]} %}}'", token);
                    return (body, null);
                case TokenKind.Text:
                    Next();
                    body.Add(new TextNode(token.Position, token.Value));
                    break;
                case TokenKind.VariableBegin:
                    Next();
                    body.Add(new OutputNode(token.Position, ParseTuple(withCondition: true)));
                    ThrowPendingUnknown();
                    Expect(TokenKind.VariableEnd);
                    break;
                case TokenKind.BlockBegin:
                    Next();
                    var tag = Current;
                    if (tag.Kind == TokenKind.Name && Array.IndexOf(endTags, tag.Value) >= 0)
                    {
                        Next();
                        return (body, tag.Value);
                    }
                    body.Add(ParseStatement(token));
                    ThrowPendingUnknown();
                    break;
                default:
                    throw Error($"unexpected {token}", token);
            }
        }
    }

    private void ThrowPendingUnknown()
    {
        if (_pendingUnknown.Count > 0)
            throw _pendingUnknown[0];
    }

    private void UnknownName(string kind, Token name)
    {
        if (!_soft)
            _pendingUnknown.Add(Error($"unknown {kind} '{name.Value}'", name));
    }

    /// <summary>Parses a nested body with the given softness, restoring the enclosing one afterwards.</summary>
    private (List<Node> Body, string? EndTag) ParseBodyWithSoftness(bool soft, string[] endTags)
    {
        var outer = _soft;
        _soft = soft;
        try
        {
            ThrowPendingUnknown();
            return ParseBody(endTags);
        }
        finally
        {
            _soft = outer;
        }
    }

    private Node ParseStatement(Token blockBegin)
    {
        using var nesting = Nest();
        var tag = Current;
        if (tag.Kind != TokenKind.Name)
            throw Error($"expected a tag name but found {tag}", tag);
        switch (tag.Value)
        {
            case "if":
                Next();
                return ParseIf(tag);
            case "for":
                Next();
                return ParseFor(tag);
            case "set":
                Next();
                return ParseSet(tag);
            case "macro":
                Next();
                return ParseMacro(tag);
            case "filter":
                Next();
                // jinja2 checks a filter block's filters in the block's own (never soft) frame.
                var outerSoft = _soft;
                _soft = false;
                var filters = ParseFilterChain(inline: true);
                _soft = outerSoft;
                Expect(TokenKind.BlockEnd);
                var (body, _) = ParseBodyWithSoftness(false, ["endfilter"]);
                Expect(TokenKind.BlockEnd);
                return new FilterBlockNode(tag.Position, filters, body);
            case "break":
            case "continue":
                Next();
                if (_loopDepth == 0)
                    throw Error($"'{tag.Value}' outside of a for loop", tag);
                Expect(TokenKind.BlockEnd);
                return tag.Value == "break" ? new BreakNode(tag.Position) : new ContinueNode(tag.Position);
            default:
                if (UnsupportedTags.Contains(tag.Value))
                    throw Error($"unsupported tag '{tag.Value}'", tag);
                throw Error($"unknown tag '{tag.Value}'", blockBegin.Kind == TokenKind.BlockBegin ? tag : blockBegin);
        }
    }

    private IfNode ParseIf(Token tag)
    {
        var outer = _soft;
        _soft = true;
        try
        {
            return ParseIfBranches(tag);
        }
        finally
        {
            _soft = outer;
        }
    }

    private IfNode ParseIfBranches(Token tag)
    {
        var condition = ParseTuple(withCondition: false);
        Expect(TokenKind.BlockEnd);
        var (then, end) = ParseBody(["elif", "else", "endif"]);
        IReadOnlyList<Node> otherwise = [];
        if (end == "elif")
        {
            var elifTag = _tokens[_index - 1];
            otherwise = [ParseIfBranches(elifTag)];
            return new IfNode(tag.Position, condition, then, otherwise);
        }
        if (end == "else")
        {
            Expect(TokenKind.BlockEnd);
            (var elseBody, _) = ParseBody(["endif"]);
            otherwise = elseBody;
        }
        Expect(TokenKind.BlockEnd);
        return new IfNode(tag.Position, condition, then, otherwise);
    }

    private ForNode ParseFor(Token tag)
    {
        var target = ParseAssignTarget(allowAttribute: false);
        Expect(TokenKind.Name, "in");
        var iterable = ParseTuple(withCondition: false);
        Expr? filter = null;
        if (SkipName("if"))
            filter = ParseExpression();
        if (Current.IsName("recursive"))
            throw Error("recursive for loops are not supported", Current);
        Expect(TokenKind.BlockEnd);
        _loopDepth++;
        var (body, end) = ParseBodyWithSoftness(false, ["endfor", "else"]);
        _loopDepth--;
        IReadOnlyList<Node> otherwise = [];
        if (end == "else")
        {
            Expect(TokenKind.BlockEnd);
            (var elseBody, _) = ParseBody(["endfor"]);
            otherwise = elseBody;
        }
        Expect(TokenKind.BlockEnd);
        return new ForNode(tag.Position, target, iterable, filter, body, otherwise);
    }

    private Node ParseSet(Token tag)
    {
        var target = ParseAssignTarget(allowAttribute: true);
        if (SkipOperator("="))
        {
            var value = ParseTuple(withCondition: true);
            Expect(TokenKind.BlockEnd);
            return new SetNode(tag.Position, target, value);
        }
        var filters = Current.IsOperator("|") ? ParseFilterChain(inline: false) : [];
        Expect(TokenKind.BlockEnd);
        var (body, _) = ParseBodyWithSoftness(false, ["endset"]);
        Expect(TokenKind.BlockEnd);
        return new SetBlockNode(tag.Position, target, filters, body);
    }

    private MacroNode ParseMacro(Token tag)
    {
        var name = Expect(TokenKind.Name).Value;
        Expect(TokenKind.Operator, "(");
        var parameters = new List<string>();
        var defaults = new List<Expr?>();
        while (!SkipOperator(")"))
        {
            if (parameters.Count > 0)
                Expect(TokenKind.Operator, ",");
            if (SkipOperator(")"))
                break;
            parameters.Add(Expect(TokenKind.Name).Value);
            if (SkipOperator("="))
                defaults.Add(ParseExpression());
            else if (defaults.Any(d => d is not null))
                throw Error("non-default macro parameter follows a default one", Current);
            else
                defaults.Add(null);
        }
        Expect(TokenKind.BlockEnd);
        var outerLoopDepth = _loopDepth;
        _loopDepth = 0;
        var (body, _) = ParseBodyWithSoftness(false, ["endmacro"]);
        _loopDepth = outerLoopDepth;
        if (Current.Kind == TokenKind.Name && Current.Value == name)
            Next();
        Expect(TokenKind.BlockEnd);
        return new MacroNode(tag.Position, name, parameters, defaults, body);
    }

    private Target ParseAssignTarget(bool allowAttribute)
    {
        var items = new List<Target>();
        var start = Current;
        do
        {
            var name = Expect(TokenKind.Name);
            if (allowAttribute && SkipOperator("."))
                items.Add(new AttributeTarget(name.Position, name.Value, Expect(TokenKind.Name).Value));
            else
                items.Add(new NameTarget(name.Position, name.Value));
        }
        while (SkipOperator(","));
        return items.Count == 1 ? items[0] : new TupleTarget(start.Position, items);
    }

    /// <summary>An expression, or several separated by commas forming a tuple.</summary>
    private Expr ParseTuple(bool withCondition, bool explicitParentheses = false)
    {
        var start = Current;
        var items = new List<Expr>();
        var sawComma = false;
        while (true)
        {
            if (items.Count > 0)
            {
                if (!SkipOperator(","))
                    break;
                sawComma = true;
            }
            if (IsTupleEnd())
                break;
            items.Add(withCondition ? ParseExpression() : ParseOr());
        }
        if (!sawComma)
        {
            if (items.Count == 1)
                return items[0];
            if (!explicitParentheses)
                throw Error($"expected an expression but found {Current}", Current);
        }
        return new ListExpr(start.Position, items, IsTuple: true);
    }

    private bool IsTupleEnd()
    {
        var t = Current;
        return t.Kind is TokenKind.VariableEnd or TokenKind.BlockEnd or TokenKind.EndOfTemplate
            || t.IsOperator(")") || t.IsName("in") || t.IsOperator("=");
    }

    private NestingScope Nest()
    {
        if (++_nesting > MaxNesting)
            throw Error($"template nests deeper than {MaxNesting} levels", Current);
        return new NestingScope(this);
    }

    private readonly struct NestingScope(TemplateParser parser) : IDisposable
    {
        public void Dispose() => parser._nesting--;
    }

    private Expr ParseExpression()
    {
        using var nesting = Nest();
        var pendingBefore = _pendingUnknown.Count;
        var expr = ParseOr();
        while (Current.IsName("if"))
        {
            _pendingUnknown.RemoveRange(pendingBefore, _pendingUnknown.Count - pendingBefore);
            var outer = _soft;
            _soft = true;
            var at = Next();
            var condition = ParseOr();
            Expr? otherwise = SkipName("else") ? ParseExpression() : null;
            _soft = outer;
            expr = new ConditionalExpr(at.Position, condition, expr, otherwise);
        }
        return expr;
    }

    private Expr ParseOr()
    {
        var left = ParseAnd();
        while (Current.IsName("or"))
        {
            var at = Next();
            left = new BinaryExpr(at.Position, "or", left, ParseAnd());
        }
        return left;
    }

    private Expr ParseAnd()
    {
        var left = ParseNot();
        while (Current.IsName("and"))
        {
            var at = Next();
            left = new BinaryExpr(at.Position, "and", left, ParseNot());
        }
        return left;
    }

    private Expr ParseNot()
    {
        using var nesting = Nest();
        if (Current.IsName("not"))
        {
            var at = Next();
            return new UnaryExpr(at.Position, "not", ParseNot());
        }
        return ParseCompare();
    }

    private Expr ParseCompare()
    {
        var first = ParseMath1();
        var rest = new List<(string, Expr)>();
        while (true)
        {
            var t = Current;
            if (t.Kind == TokenKind.Operator && ComparisonOperators.Contains(t.Value))
            {
                Next();
                rest.Add((t.Value, ParseMath1()));
            }
            else if (t.IsName("in"))
            {
                Next();
                rest.Add(("in", ParseMath1()));
            }
            else if (t.IsName("not") && Peek().IsName("in"))
            {
                Next();
                Next();
                rest.Add(("not in", ParseMath1()));
            }
            else
            {
                break;
            }
        }
        return rest.Count == 0 ? first : new CompareExpr(first.Position, first, rest);
    }

    private Expr ParseMath1()
    {
        var left = ParseConcat();
        while (Current.IsOperator("+") || Current.IsOperator("-"))
        {
            var op = Next();
            left = new BinaryExpr(op.Position, op.Value, left, ParseConcat());
        }
        return left;
    }

    private Expr ParseConcat()
    {
        var first = ParseMath2();
        if (!Current.IsOperator("~"))
            return first;
        var parts = new List<Expr> { first };
        while (SkipOperator("~"))
            parts.Add(ParseMath2());
        return new ConcatExpr(first.Position, parts);
    }

    private Expr ParseMath2()
    {
        var left = ParsePow();
        while (Current.Kind == TokenKind.Operator && Current.Value is "*" or "/" or "//" or "%")
        {
            var op = Next();
            left = new BinaryExpr(op.Position, op.Value, left, ParsePow());
        }
        return left;
    }

    private Expr ParsePow()
    {
        var left = ParseUnary(withFilter: true);
        while (Current.IsOperator("**"))
        {
            var op = Next();
            left = new BinaryExpr(op.Position, "**", left, ParseUnary(withFilter: true));
        }
        return left;
    }

    private Expr ParseUnary(bool withFilter)
    {
        using var nesting = Nest();
        Expr node;
        if (Current.IsOperator("-") || Current.IsOperator("+"))
        {
            var op = Next();
            node = new UnaryExpr(op.Position, op.Value, ParseUnary(withFilter: false));
        }
        else
        {
            node = ParsePrimary();
        }
        node = ParsePostfix(node);
        return withFilter ? ParseFilterExpr(node) : node;
    }

    private Expr ParsePrimary()
    {
        var t = Next();
        switch (t.Kind)
        {
            case TokenKind.Name:
                return t.Value switch
                {
                    "true" or "True" => new LiteralExpr(t.Position, true),
                    "false" or "False" => new LiteralExpr(t.Position, false),
                    "none" or "None" => new LiteralExpr(t.Position, null),
                    _ => new NameExpr(t.Position, t.Value),
                };
            case TokenKind.String:
                var text = t.Value;
                while (Current.Kind == TokenKind.String)
                    text += Next().Value;
                return new LiteralExpr(t.Position, text);
            case TokenKind.Integer:
                return new LiteralExpr(t.Position, long.Parse(t.Value, CultureInfo.InvariantCulture));
            case TokenKind.Float:
                return new LiteralExpr(t.Position, double.Parse(t.Value, CultureInfo.InvariantCulture));
            case TokenKind.Operator when t.Value == "(":
                var inner = ParseTuple(withCondition: true, explicitParentheses: true);
                Expect(TokenKind.Operator, ")");
                return inner;
            case TokenKind.Operator when t.Value == "[":
                var items = new List<Expr>();
                while (!SkipOperator("]"))
                {
                    if (items.Count > 0)
                        Expect(TokenKind.Operator, ",");
                    if (SkipOperator("]"))
                        break;
                    items.Add(ParseExpression());
                }
                return new ListExpr(t.Position, items, IsTuple: false);
            case TokenKind.Operator when t.Value == "{":
                var pairs = new List<(Expr, Expr)>();
                while (!SkipOperator("}"))
                {
                    if (pairs.Count > 0)
                        Expect(TokenKind.Operator, ",");
                    if (SkipOperator("}"))
                        break;
                    var key = ParseExpression();
                    Expect(TokenKind.Operator, ":");
                    pairs.Add((key, ParseExpression()));
                }
                return new DictExpr(t.Position, pairs);
            default:
                throw Error($"unexpected {t}", t);
        }
    }

    private Expr ParsePostfix(Expr node)
    {
        while (true)
        {
            var t = Current;
            if (t.IsOperator("."))
            {
                Next();
                var name = Next();
                node = name.Kind switch
                {
                    TokenKind.Name => new AttributeExpr(t.Position, node, name.Value),
                    TokenKind.Integer => new SubscriptExpr(t.Position, node, new LiteralExpr(name.Position, long.Parse(name.Value, CultureInfo.InvariantCulture))),
                    _ => throw Error($"expected an attribute name after '.' but found {name}", name),
                };
            }
            else if (t.IsOperator("["))
            {
                Next();
                var indices = new List<Expr>();
                while (!SkipOperator("]"))
                {
                    if (indices.Count > 0)
                        Expect(TokenKind.Operator, ",");
                    indices.Add(ParseSubscribed());
                }
                if (indices.Count == 0)
                    throw Error("empty subscript '[]'", t);
                node = new SubscriptExpr(t.Position, node, indices.Count == 1 ? indices[0] : new ListExpr(t.Position, indices, IsTuple: true));
            }
            else if (t.IsOperator("("))
            {
                node = ParseCall(node);
            }
            else
            {
                return node;
            }
        }
    }

    private Expr ParseSubscribed()
    {
        var at = Current;
        Expr? start = null;
        if (!Current.IsOperator(":"))
        {
            start = ParseExpression();
            if (!Current.IsOperator(":"))
                return start;
        }
        Next();
        Expr? stop = IsSliceEnd() || Current.IsOperator(":") ? null : ParseExpression();
        Expr? step = null;
        if (SkipOperator(":") && !IsSliceEnd())
            step = ParseExpression();
        return new SliceExpr(at.Position, start, stop, step);
    }

    private bool IsSliceEnd() => Current.IsOperator("]") || Current.IsOperator(",");

    private CallExpr ParseCall(Expr callee)
    {
        var open = Expect(TokenKind.Operator, "(");
        var (args, kwargs) = ParseCallArguments();
        return new CallExpr(open.Position, callee, args, kwargs);
    }

    /// <summary>Parses <c>(a, b, name=c)</c>; the opening parenthesis is already consumed.</summary>
    private (List<Expr> Args, List<(string, Expr)> Kwargs) ParseCallArguments()
    {
        var args = new List<Expr>();
        var kwargs = new List<(string, Expr)>();
        while (!SkipOperator(")"))
        {
            if (args.Count + kwargs.Count > 0)
                Expect(TokenKind.Operator, ",");
            if (SkipOperator(")"))
                break;
            if (Current.IsOperator("*") || Current.IsOperator("**"))
                throw Error("'*args' and '**kwargs' in calls are not supported", Current);
            if (Current.Kind == TokenKind.Name && Peek().IsOperator("="))
            {
                var name = Next().Value;
                Next();
                kwargs.Add((name, ParseExpression()));
            }
            else
            {
                if (kwargs.Count > 0)
                    throw Error("positional argument follows keyword argument", Current);
                args.Add(ParseExpression());
            }
        }
        return (args, kwargs);
    }

    private Expr ParseFilterExpr(Expr node)
    {
        while (true)
        {
            if (Current.IsOperator("|"))
            {
                foreach (var filter in ParseFilterChain(inline: false))
                    node = new FilterExpr(filter.Position, node, filter);
            }
            else if (Current.IsName("is"))
            {
                node = ParseTest(node);
            }
            else if (Current.IsOperator("("))
            {
                node = ParseCall(node);
            }
            else
            {
                return node;
            }
        }
    }

    /// <summary>A filter or test name; jinja2 allows dotted ones (none exist here, so they fail as unknown).</summary>
    private Token ExpectDottedName()
    {
        var name = Expect(TokenKind.Name);
        var text = name.Value;
        while (SkipOperator("."))
            text += "." + Expect(TokenKind.Name).Value;
        return name with { Value = text };
    }

    /// <summary>Parses <c>| f(args) | g</c>; with <paramref name="inline"/> the first filter has no leading bar.</summary>
    private List<FilterCall> ParseFilterChain(bool inline)
    {
        var filters = new List<FilterCall>();
        while (inline || Current.IsOperator("|"))
        {
            if (!inline)
                Next();
            inline = false;
            var name = ExpectDottedName();
            if (!TemplateBuiltins.FilterNames.Contains(name.Value))
                UnknownName("filter", name);
            List<Expr> args = [];
            List<(string, Expr)> kwargs = [];
            if (SkipOperator("("))
                (args, kwargs) = ParseCallArguments();
            filters.Add(new FilterCall(name.Position, name.Value, args, kwargs));
        }
        return filters;
    }

    private TestExpr ParseTest(Expr node)
    {
        var isToken = Next();
        var negated = SkipName("not");
        var name = ExpectDottedName();
        if (!TemplateBuiltins.TestNames.Contains(name.Value))
            UnknownName("test", name);
        var args = new List<Expr>();
        if (SkipOperator("("))
        {
            var (positional, kwargs) = ParseCallArguments();
            if (kwargs.Count > 0)
                throw Error("keyword arguments to tests are not supported", name);
            args = positional;
        }
        else if ((Current.Kind is TokenKind.Name or TokenKind.String or TokenKind.Integer or TokenKind.Float
                  || Current.IsOperator("[") || Current.IsOperator("{"))
                 && !Current.IsName("else") && !Current.IsName("or") && !Current.IsName("and"))
        {
            if (Current.IsName("is"))
                throw Error("tests cannot be chained with 'is'", Current);
            args.Add(ParsePostfix(ParsePrimary()));
        }
        return new TestExpr(isToken.Position, node, name.Value, args, negated);
    }
}
