using System.Numerics;
using System.Runtime.InteropServices;
using Lutra.Core.Kernels;

namespace Lutra.Models.Blocks;

/// <summary>RMSNorm with llama.cpp CPU semantics (formats.md §5.2).</summary>
public static class RmsNorm
{
    /// <summary>y = x / sqrt(mean(x²) + eps) ⊙ weight, for one row.</summary>
    public static void Apply(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, float eps, Span<float> y)
    {
        if (weight.Length < x.Length || y.Length < x.Length)
            throw new ArgumentException("weight or output is shorter than the row");
        var vector = KernelIsa.Selected != InstructionSet.Scalar && Vector.IsHardwareAccelerated;
        ref var xr = ref MemoryMarshal.GetReference(x);
        ref var wr = ref MemoryMarshal.GetReference(weight);
        ref var yr = ref MemoryMarshal.GetReference(y);
        var width = Vector<float>.Count;

        // Squares in f32, summed in double, as ggml_compute_forward_rms_norm_f32 does (the vector path only
        // reorders the double additions).
        var sum = 0.0;
        var i = 0;
        if (vector)
        {
            Vector<double> s0 = default, s1 = default;
            for (; i + width <= x.Length; i += width)
            {
                var v = Vector.LoadUnsafe(ref xr, (nuint)i);
                Vector.Widen(v * v, out var low, out var high);
                s0 += low;
                s1 += high;
            }
            sum = Vector.Sum(s0 + s1);
        }
        for (; i < x.Length; i++)
            sum += x[i] * x[i];
        var mean = (float)(sum / x.Length);
        var scale = 1.0f / MathF.Sqrt(mean + eps);

        // The norm and the weight multiply are separate ggml ops: round after each.
        i = 0;
        if (vector)
        {
            var s = new Vector<float>(scale);
            for (; i + width <= x.Length; i += width)
                (Vector.LoadUnsafe(ref xr, (nuint)i) * s * Vector.LoadUnsafe(ref wr, (nuint)i)).StoreUnsafe(ref yr, (nuint)i);
        }
        for (; i < x.Length; i++)
            y[i] = x[i] * scale * weight[i];
    }
}
