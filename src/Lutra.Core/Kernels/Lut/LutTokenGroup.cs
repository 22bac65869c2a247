namespace Lutra.Core.Kernels;

/// <summary>
/// The number of tokens a batched lookup-table pass serves at once, as a type: the kernels are generic over it,
/// so the JIT compiles one specialization per size with the unused tokens' accumulators and lookups removed.
/// </summary>
internal interface ILutTokenGroup
{
    static abstract int Count { get; }
}

internal struct TwoTokens : ILutTokenGroup
{
    public static int Count => 2;
}

internal struct FourTokens : ILutTokenGroup
{
    public static int Count => 4;
}

internal struct EightTokens : ILutTokenGroup
{
    public static int Count => 8;
}
