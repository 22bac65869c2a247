using System.Runtime.InteropServices;
using static Lutra.Core.Quants.QuantMath;

namespace Lutra.Core.Quants;

/// <summary>Q8_0 (34 B / 32 elements): value = q·d, q signed int8. Also the activation format of Q4_0/Q5_0/Q8_0/IQ4_NL.</summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
public unsafe struct BlockQ8_0
{
    public const int Size = 32;
    public Half D;
    public fixed sbyte Qs[Size];
}

public static unsafe class Q8_0Reference
{
    public static readonly ReferenceKernels Kernels = new(Dequantize, Quantize, GgmlType.Q8_0, Dot, QuantizeActivations);

    public static void Dequantize(ReadOnlySpan<byte> src, Span<float> dst)
    {
        var blocks = MemoryMarshal.Cast<byte, BlockQ8_0>(src);
        for (var i = 0; i < dst.Length / BlockQ8_0.Size; i++)
        {
            var b = blocks[i];
            var d = ToFloat(b.D);
            var y = dst.Slice(i * BlockQ8_0.Size, BlockQ8_0.Size);
            for (var j = 0; j < BlockQ8_0.Size; j++)
                y[j] = b.Qs[j] * d;
        }
    }

    /// <summary>quantize_row_q8_0_ref (the weight quantizer): d = amax/127, id = 1/d, q = roundf(x·id), halves away from zero.</summary>
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst)
    {
        var blocks = MemoryMarshal.Cast<byte, BlockQ8_0>(dst);
        for (var i = 0; i < src.Length / BlockQ8_0.Size; i++)
        {
            var x = src.Slice(i * BlockQ8_0.Size, BlockQ8_0.Size);
            ref var b = ref blocks[i];
            var d = AbsMax(x) / 127;
            var id = d != 0 ? 1.0f / d : 0.0f;
            b.D = ToHalf(d);
            for (var j = 0; j < BlockQ8_0.Size; j++)
                b.Qs[j] = (sbyte)RoundAway(x[j] * id);
        }
    }

    /// <summary>
    /// quantize_row_q8_0 in llama.cpp's AVX2/AVX-512 build: id = 127/amax computed directly (not 1/d), rounding
    /// half to even, saturating packs. It differs from <see cref="Quantize"/> by ±1 in tie and last-ulp cases.
    /// </summary>
    public static void QuantizeActivations(ReadOnlySpan<float> src, Span<byte> dst)
    {
        var blocks = MemoryMarshal.Cast<byte, BlockQ8_0>(dst);
        for (var i = 0; i < src.Length / BlockQ8_0.Size; i++)
        {
            var x = src.Slice(i * BlockQ8_0.Size, BlockQ8_0.Size);
            ref var b = ref blocks[i];
            var amax = AbsMax(x);
            b.D = ToHalf(amax / 127f);
            var id = amax != 0 ? 127f / amax : 0f;
            for (var j = 0; j < BlockQ8_0.Size; j++)
                b.Qs[j] = (sbyte)Math.Clamp(RoundEven(x[j] * id), sbyte.MinValue, sbyte.MaxValue);
        }
    }

    /// <summary>Σ_blocks sumi · (d_w · d_a).</summary>
    public static float Dot(ReadOnlySpan<byte> weights, ReadOnlySpan<byte> activations, int n)
    {
        var w = MemoryMarshal.Cast<byte, BlockQ8_0>(weights);
        var a = MemoryMarshal.Cast<byte, BlockQ8_0>(activations);
        var sum = 0f;
        for (var i = 0; i < n / BlockQ8_0.Size; i++)
        {
            var wb = w[i];
            var ab = a[i];
            var sumi = 0;
            for (var j = 0; j < BlockQ8_0.Size; j++)
                sumi += wb.Qs[j] * ab.Qs[j];
            sum += sumi * (ToFloat(wb.D) * ToFloat(ab.D));
        }
        return sum;
    }
}
