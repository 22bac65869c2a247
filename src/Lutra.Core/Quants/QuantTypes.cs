using System.Collections.Frozen;

namespace Lutra.Core.Quants;

/// <summary>
/// Format facts of one ggml type: the single row every other part of Lutra looks up.
/// </summary>
/// <param name="Type">ggml type id.</param>
/// <param name="Name">ggml's name (e.g. "Q4_K").</param>
/// <param name="BlockSize">Elements per block.</param>
/// <param name="BlockBytes">Bytes per block.</param>
/// <param name="IsSupported">Lutra can compute with this type (dequantize at least).</param>
public sealed record QuantTypeInfo(GgmlType Type, string Name, int BlockSize, int BlockBytes, bool IsSupported)
{
    public double BitsPerWeight => BlockBytes * 8.0 / BlockSize;

    /// <summary>Scalar reference kernels; null for types Lutra cannot compute with.</summary>
    public ReferenceKernels? Reference { get; init; }

    /// <summary>Bytes of one row of <paramref name="elements"/> values; the caller checks divisibility.</summary>
    public long RowBytes(long elements) => elements / BlockSize * BlockBytes;
}

/// <summary>The table of ggml types. Each type is declared once, here.</summary>
public static class QuantTypes
{
    private static readonly QuantTypeInfo[] Rows =
    [
        new(GgmlType.F32, "F32", 1, 4, true) { Reference = F32Reference.Kernels },
        new(GgmlType.F16, "F16", 1, 2, true) { Reference = F16Reference.Kernels },
        new(GgmlType.Q4_0, "Q4_0", 32, 18, true) { Reference = Q4_0Reference.Kernels },
        new(GgmlType.Q4_1, "Q4_1", 32, 20, true) { Reference = Q4_1Reference.Kernels },
        new(GgmlType.Q5_0, "Q5_0", 32, 22, true) { Reference = Q5_0Reference.Kernels },
        new(GgmlType.Q5_1, "Q5_1", 32, 24, true) { Reference = Q5_1Reference.Kernels },
        new(GgmlType.Q8_0, "Q8_0", 32, 34, true) { Reference = Q8_0Reference.Kernels },
        new(GgmlType.Q8_1, "Q8_1", 32, 36, true) { Reference = Q8_1Reference.Kernels },
        new(GgmlType.Q2_K, "Q2_K", 256, 84, true) { Reference = Q2_KReference.Kernels },
        new(GgmlType.Q3_K, "Q3_K", 256, 110, true) { Reference = Q3_KReference.Kernels },
        new(GgmlType.Q4_K, "Q4_K", 256, 144, true) { Reference = Q4_KReference.Kernels },
        new(GgmlType.Q5_K, "Q5_K", 256, 176, true) { Reference = Q5_KReference.Kernels },
        new(GgmlType.Q6_K, "Q6_K", 256, 210, true) { Reference = Q6_KReference.Kernels },
        new(GgmlType.Q8_K, "Q8_K", 256, 292, true) { Reference = Q8_KReference.Kernels },
        new(GgmlType.IQ2_XXS, "IQ2_XXS", 256, 66, false),
        new(GgmlType.IQ2_XS, "IQ2_XS", 256, 74, false),
        new(GgmlType.IQ3_XXS, "IQ3_XXS", 256, 98, false),
        new(GgmlType.IQ1_S, "IQ1_S", 256, 50, false),
        new(GgmlType.IQ4_NL, "IQ4_NL", 32, 18, true) { Reference = IQ4_NLReference.Kernels },
        new(GgmlType.IQ3_S, "IQ3_S", 256, 110, false),
        new(GgmlType.IQ2_S, "IQ2_S", 256, 82, false),
        new(GgmlType.IQ4_XS, "IQ4_XS", 256, 136, true) { Reference = IQ4_XSReference.Kernels },
        new(GgmlType.I8, "I8", 1, 1, false),
        new(GgmlType.I16, "I16", 1, 2, false),
        new(GgmlType.I32, "I32", 1, 4, false),
        new(GgmlType.I64, "I64", 1, 8, false),
        new(GgmlType.F64, "F64", 1, 8, false),
        new(GgmlType.IQ1_M, "IQ1_M", 256, 56, false),
        new(GgmlType.BF16, "BF16", 1, 2, true) { Reference = BF16Reference.Kernels },
        new(GgmlType.TQ1_0, "TQ1_0", 256, 54, true) { Reference = TQ1_0Reference.Kernels },
        new(GgmlType.TQ2_0, "TQ2_0", 256, 66, true) { Reference = TQ2_0Reference.Kernels },
    ];

    private static readonly FrozenDictionary<GgmlType, QuantTypeInfo> ById = Rows.ToFrozenDictionary(r => r.Type);
    private static readonly FrozenDictionary<string, QuantTypeInfo> ByName =
        Rows.ToFrozenDictionary(r => r.Name, StringComparer.OrdinalIgnoreCase);

    public static IReadOnlyList<QuantTypeInfo> All => Rows;

    /// <summary>The row for a known type id; null for removed or unknown ids (4, 5, 31-33, 36-38, ≥ 39).</summary>
    public static QuantTypeInfo? TryGet(GgmlType type) => ById.GetValueOrDefault(type);

    public static QuantTypeInfo Get(GgmlType type) =>
        TryGet(type) ?? throw new NotSupportedException($"ggml type id {(int)type} is unknown or was removed from ggml");

    public static QuantTypeInfo? TryGet(string name) => ByName.GetValueOrDefault(name);

    /// <summary>Throws "type X is not supported yet" for types Lutra knows by id but cannot compute with.</summary>
    public static QuantTypeInfo RequireSupported(GgmlType type)
    {
        var info = Get(type);
        if (!info.IsSupported)
            throw new NotSupportedException($"type {info.Name} is not supported yet");
        return info;
    }
}
