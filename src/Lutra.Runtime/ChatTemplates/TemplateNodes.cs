namespace Lutra.Runtime.ChatTemplates;

// The syntax tree of a parsed template. Statements write output; expressions produce values.

internal abstract record Node(SourcePosition Position);

internal sealed record TextNode(SourcePosition Position, string Text) : Node(Position);

internal sealed record OutputNode(SourcePosition Position, Expr Value) : Node(Position);

internal sealed record IfNode(SourcePosition Position, Expr Condition, IReadOnlyList<Node> Then, IReadOnlyList<Node> Else) : Node(Position);

internal sealed record ForNode(
    SourcePosition Position,
    Target Target,
    Expr Iterable,
    Expr? Filter,
    IReadOnlyList<Node> Body,
    IReadOnlyList<Node> Else) : Node(Position);

internal sealed record SetNode(SourcePosition Position, Target Target, Expr Value) : Node(Position);

internal sealed record SetBlockNode(SourcePosition Position, Target Target, IReadOnlyList<FilterCall> Filters, IReadOnlyList<Node> Body) : Node(Position);

internal sealed record FilterBlockNode(SourcePosition Position, IReadOnlyList<FilterCall> Filters, IReadOnlyList<Node> Body) : Node(Position);

internal sealed record MacroNode(
    SourcePosition Position,
    string Name,
    IReadOnlyList<string> Parameters,
    IReadOnlyList<Expr?> Defaults,
    IReadOnlyList<Node> Body) : Node(Position);

internal sealed record BreakNode(SourcePosition Position) : Node(Position);

internal sealed record ContinueNode(SourcePosition Position) : Node(Position);

/// <summary>The left side of <c>set</c> or <c>for</c>: a name, <c>ns.attr</c>, or a tuple of names.</summary>
internal abstract record Target(SourcePosition Position);

internal sealed record NameTarget(SourcePosition Position, string Name) : Target(Position);

internal sealed record AttributeTarget(SourcePosition Position, string Name, string Attribute) : Target(Position);

internal sealed record TupleTarget(SourcePosition Position, IReadOnlyList<Target> Items) : Target(Position);

internal abstract record Expr(SourcePosition Position);

internal sealed record LiteralExpr(SourcePosition Position, object? Value) : Expr(Position);

internal sealed record NameExpr(SourcePosition Position, string Name) : Expr(Position);

internal sealed record ListExpr(SourcePosition Position, IReadOnlyList<Expr> Items, bool IsTuple) : Expr(Position);

internal sealed record DictExpr(SourcePosition Position, IReadOnlyList<(Expr Key, Expr Value)> Items) : Expr(Position);

internal sealed record AttributeExpr(SourcePosition Position, Expr Target, string Name) : Expr(Position);

internal sealed record SubscriptExpr(SourcePosition Position, Expr Target, Expr Index) : Expr(Position);

internal sealed record SliceExpr(SourcePosition Position, Expr? Start, Expr? Stop, Expr? Step) : Expr(Position);

internal sealed record CallExpr(SourcePosition Position, Expr Callee, IReadOnlyList<Expr> Args, IReadOnlyList<(string Name, Expr Value)> Kwargs) : Expr(Position);

internal sealed record FilterCall(SourcePosition Position, string Name, IReadOnlyList<Expr> Args, IReadOnlyList<(string Name, Expr Value)> Kwargs);

internal sealed record FilterExpr(SourcePosition Position, Expr Value, FilterCall Filter) : Expr(Position);

internal sealed record TestExpr(SourcePosition Position, Expr Value, string Name, IReadOnlyList<Expr> Args, bool Negated) : Expr(Position);

internal sealed record UnaryExpr(SourcePosition Position, string Operator, Expr Operand) : Expr(Position);

internal sealed record BinaryExpr(SourcePosition Position, string Operator, Expr Left, Expr Right) : Expr(Position);

/// <summary>A comparison chain such as <c>a &lt; b &lt;= c</c>, evaluated pairwise as in Python.</summary>
internal sealed record CompareExpr(SourcePosition Position, Expr First, IReadOnlyList<(string Operator, Expr Operand)> Rest) : Expr(Position);

internal sealed record ConcatExpr(SourcePosition Position, IReadOnlyList<Expr> Parts) : Expr(Position);

internal sealed record ConditionalExpr(SourcePosition Position, Expr Condition, Expr Then, Expr? Else) : Expr(Position);
