using System.Runtime.InteropServices;
using static Lutra.Core.Quants.QuantMath;

namespace Lutra.Core.Quants;

/// <summary>
/// Q8_1 (36 B / 32 elements): value = q·d; <c>S</c> = f16(d·Σq) lets Q4_1/Q5_1 dot products add their min term
/// without touching the quants. The activation format of Q4_1 and Q5_1.
/// </summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
public unsafe struct BlockQ8_1
{
    public const int Size = 32;
    public Half D;
    public Half S;
    public fixed sbyte Qs[Size];
}

public static unsafe class Q8_1Reference
{
    public static readonly ReferenceKernels Kernels = new(Dequantize, Quantize, GgmlType.Q8_1, Dot, QuantizeActivations);

    public static void Dequantize(ReadOnlySpan<byte> src, Span<float> dst)
    {
        var blocks = MemoryMarshal.Cast<byte, BlockQ8_1>(src);
        for (var i = 0; i < dst.Length / BlockQ8_1.Size; i++)
        {
            var b = blocks[i];
            var d = ToFloat(b.D);
            var y = dst.Slice(i * BlockQ8_1.Size, BlockQ8_1.Size);
            for (var j = 0; j < BlockQ8_1.Size; j++)
                y[j] = b.Qs[j] * d;
        }
    }

    /// <summary>quantize_row_q8_1_ref: as Q8_0's reference (id = 1/d, halves away from zero) plus s = f16(Σq · d).</summary>
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst)
    {
        var blocks = MemoryMarshal.Cast<byte, BlockQ8_1>(dst);
        for (var i = 0; i < src.Length / BlockQ8_1.Size; i++)
        {
            var x = src.Slice(i * BlockQ8_1.Size, BlockQ8_1.Size);
            ref var b = ref blocks[i];
            var d = AbsMax(x) / 127;
            var id = d != 0 ? 1.0f / d : 0.0f;
            b.D = ToHalf(d);
            var sum = 0;
            for (var j = 0; j < BlockQ8_1.Size; j++)
            {
                b.Qs[j] = (sbyte)RoundAway(x[j] * id);
                sum += b.Qs[j];
            }
            b.S = ToHalf(sum * d);
        }
    }

    /// <summary>quantize_row_q8_1 in the AVX2/AVX-512 build: id = 127/amax, half-to-even, s = f16(d · Σq).</summary>
    public static void QuantizeActivations(ReadOnlySpan<float> src, Span<byte> dst)
    {
        var blocks = MemoryMarshal.Cast<byte, BlockQ8_1>(dst);
        for (var i = 0; i < src.Length / BlockQ8_1.Size; i++)
        {
            var x = src.Slice(i * BlockQ8_1.Size, BlockQ8_1.Size);
            ref var b = ref blocks[i];
            var amax = AbsMax(x);
            var d = amax / 127f;
            b.D = ToHalf(d);
            var id = amax != 0 ? 127f / amax : 0f;
            var sum = 0;
            for (var j = 0; j < BlockQ8_1.Size; j++)
            {
                b.Qs[j] = (sbyte)Math.Clamp(RoundEven(x[j] * id), sbyte.MinValue, sbyte.MaxValue);
                sum += b.Qs[j];
            }
            b.S = ToHalf(d * sum);
        }
    }

    /// <summary>Q8_1 · Q8_1 (ggml has no kernel for it; defined like Q8_0's for completeness): Σ sumi · (d_w · d_a).</summary>
    public static float Dot(ReadOnlySpan<byte> weights, ReadOnlySpan<byte> activations, int n)
    {
        var w = MemoryMarshal.Cast<byte, BlockQ8_1>(weights);
        var a = MemoryMarshal.Cast<byte, BlockQ8_1>(activations);
        var sum = 0f;
        for (var i = 0; i < n / BlockQ8_1.Size; i++)
        {
            var wb = w[i];
            var ab = a[i];
            var sumi = 0;
            for (var j = 0; j < BlockQ8_1.Size; j++)
                sumi += wb.Qs[j] * ab.Qs[j];
            sum += sumi * (ToFloat(wb.D) * ToFloat(ab.D));
        }
        return sum;
    }
}
