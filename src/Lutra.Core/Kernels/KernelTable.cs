using Lutra.Core.Quants;

namespace Lutra.Core.Kernels;

/// <summary>
/// The CPU kernels of one weight type at one instruction set: converting an activation row to the
/// weight's activation format, and the row dot product. Chosen once per tensor; a type/ISA pair with no
/// fast kernel uses the scalar reference, so every type always works.
/// </summary>
public sealed unsafe class RowKernels
{
    private readonly delegate*<float*, byte*, int, void> _quantize;
    private readonly delegate*<byte*, byte*, int, float> _dot;

    internal RowKernels(GgmlType weightType, InstructionSet isa,
        delegate*<float*, byte*, int, void> quantize, delegate*<byte*, byte*, int, float> dot)
    {
        WeightType = weightType;
        ActivationType = QuantReference.ActivationType(weightType);
        Isa = isa;
        _quantize = quantize;
        _dot = dot;
    }

    public GgmlType WeightType { get; }

    public GgmlType ActivationType { get; }

    /// <summary>The instruction set asked for; <see cref="DotIsFast"/> says whether a SIMD dot exists for it.</summary>
    public InstructionSet Isa { get; }

    public bool DotIsFast => _dot != null;

    public bool QuantizeIsFast => _quantize != null;

    /// <summary>Bytes of one activation row of <paramref name="n"/> elements in <see cref="ActivationType"/>.</summary>
    public int ActivationRowBytes(int n) => checked((int)QuantTypes.Get(ActivationType).RowBytes(n));

    /// <summary>Converts <paramref name="n"/> floats to <see cref="ActivationType"/> blocks (once per input vector).</summary>
    public void QuantizeActivations(float* x, byte* dst, int n)
    {
        if (_quantize != null)
            _quantize(x, dst, n);
        else
            QuantReference.QuantizeActivations(ActivationType, new ReadOnlySpan<float>(x, n), new Span<byte>(dst, ActivationRowBytes(n)));
    }

    /// <summary>Dot product of one weight row of <paramref name="n"/> elements with a converted activation row.</summary>
    public float Dot(byte* weights, byte* activations, int n)
    {
        if (_dot != null)
            return _dot(weights, activations, n);
        var weightBytes = checked((int)QuantTypes.Get(WeightType).RowBytes(n));
        return QuantReference.Dot(WeightType, new ReadOnlySpan<byte>(weights, weightBytes),
            new ReadOnlySpan<byte>(activations, ActivationRowBytes(n)), n);
    }

    public override string ToString() =>
        $"{QuantTypes.Get(WeightType).Name} x {QuantTypes.Get(ActivationType).Name}: {(DotIsFast ? Isa.ToString() : "scalar reference")}";
}

/// <summary>The CPU kernel table: which SIMD kernel serves each (weight type, instruction set).</summary>
public static unsafe class KernelTable
{
    /// <summary>Kernels for <paramref name="weightType"/> at the process-wide instruction set.</summary>
    public static RowKernels Get(GgmlType weightType) => Get(weightType, KernelIsa.Selected);

    public static RowKernels Get(GgmlType weightType, InstructionSet isa)
    {
        var activation = QuantReference.ActivationType(weightType);
        delegate*<float*, byte*, int, void> quantize = activation switch
        {
            GgmlType.Q8_0 when isa >= InstructionSet.Avx512 => &Q8_0Kernels.QuantizeRowAvx512,
            GgmlType.Q8_0 when isa >= InstructionSet.Vector128 => &Q8_0Kernels.QuantizeRowVector128,
            GgmlType.Q8_K when isa >= InstructionSet.Avx512 => &Q8_KKernels.QuantizeRowAvx512,
            _ => null,
        };
        delegate*<byte*, byte*, int, float> dot = (weightType, isa) switch
        {
            (GgmlType.Q8_0, InstructionSet.Avx512) => &Q8_0Kernels.DotQ8_0Avx512,
            (GgmlType.Q8_0, InstructionSet.Avx2) => &Q8_0Kernels.DotQ8_0Avx2,
            (GgmlType.Q4_0, InstructionSet.Avx512) => &Q8_0Kernels.DotQ4_0Avx512,
            (GgmlType.Q4_0, InstructionSet.Avx2) => &Q8_0Kernels.DotQ4_0Avx2,
            (GgmlType.Q2_K, InstructionSet.Avx512) => &Q8_KKernels.DotQ2_KAvx512,
            (GgmlType.Q4_K, InstructionSet.Avx512) => &Q8_KKernels.DotQ4_KAvx512,
            (GgmlType.Q6_K, InstructionSet.Avx512) => &Q8_KKernels.DotQ6_KAvx512,
            (GgmlType.TQ1_0, InstructionSet.Avx512) => &Q8_KKernels.DotTQ1_0Avx512,
            (GgmlType.TQ2_0, InstructionSet.Avx512) => &Q8_KKernels.DotTQ2_0Avx512,
            (GgmlType.F32, InstructionSet.Avx512) => &FloatKernels.DotF32Avx512,
            (GgmlType.F16, InstructionSet.Avx512) => &FloatKernels.DotF16Avx512,
            (GgmlType.BF16, InstructionSet.Avx512) => &FloatKernels.DotBF16Avx512,
            _ => null,
        };
        return new RowKernels(weightType, isa, quantize, dot);
    }
}
