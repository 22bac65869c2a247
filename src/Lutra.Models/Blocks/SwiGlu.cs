using System.Numerics;
using System.Runtime.InteropServices;
using Lutra.Core.Kernels;

namespace Lutra.Models.Blocks;

/// <summary>The gated FFN activation of llama (LLM_FFN_SILU, LLM_FFN_PAR): gate ← silu(gate) ⊙ up.</summary>
public static class SwiGlu
{
    public static void Apply(Span<float> gate, ReadOnlySpan<float> up)
    {
        if (up.Length < gate.Length)
            throw new ArgumentException("up is shorter than gate", nameof(up));
        var i = 0;
        if (KernelIsa.Selected != InstructionSet.Scalar && Vector.IsHardwareAccelerated)
        {
            ref var g = ref MemoryMarshal.GetReference(gate);
            ref var u = ref MemoryMarshal.GetReference(up);
            for (; i + Vector<float>.Count <= gate.Length; i += Vector<float>.Count)
            {
                var x = Vector.LoadUnsafe(ref g, (nuint)i);
                (x * Sigmoid(x) * Vector.LoadUnsafe(ref u, (nuint)i)).StoreUnsafe(ref g, (nuint)i);
            }
        }
        for (; i < gate.Length; i++)
        {
            var x = gate[i];
            gate[i] = x / (1f + MathF.Exp(-x)) * up[i];
        }
    }

    /// <summary>
    /// 1 / (1 + e⁻ˣ) from e = e^−|x| ≤ 1, which cannot overflow: 1/(1+e) for x ≥ 0, e/(1+e) for x &lt; 0. Within a
    /// few ulps of the scalar form (ggml's own vector silu is an approximation of the same size).
    /// </summary>
    public static Vector<float> Sigmoid(Vector<float> x)
    {
        var e = AttentionWork.ExpNonPositive(-Vector.Abs(x));
        var numerator = Vector.ConditionalSelect(Vector.LessThan(x, Vector<float>.Zero), e, Vector<float>.One);
        return numerator / (Vector<float>.One + e);
    }
}
