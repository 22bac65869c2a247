using System.Runtime.InteropServices;
using static Lutra.Core.Quants.QuantMath;

namespace Lutra.Core.Quants;

/// <summary>
/// IQ4_NL (18 B / 32 elements): Q4_0's nibble placement, but each 4-bit index selects a value of the non-linear
/// grid <see cref="IQ4NonLinear.Values"/>: element j = d·T[Qs[j] &amp; 0xF], element j + 16 = d·T[Qs[j] &gt;&gt; 4].
/// </summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
public unsafe struct BlockIQ4_NL
{
    public const int Size = 32;
    public Half D;
    public fixed byte Qs[Size / 2];
}

public static unsafe class IQ4_NLReference
{
    public static readonly ReferenceKernels Kernels = new(Dequantize, Quantize, GgmlType.Q8_0, Dot);

    public static void Dequantize(ReadOnlySpan<byte> src, Span<float> dst)
    {
        var values = IQ4NonLinear.Values;
        var blocks = MemoryMarshal.Cast<byte, BlockIQ4_NL>(src);
        for (var i = 0; i < dst.Length / BlockIQ4_NL.Size; i++)
        {
            var b = blocks[i];
            var d = ToFloat(b.D);
            var y = dst.Slice(i * BlockIQ4_NL.Size, BlockIQ4_NL.Size);
            for (var j = 0; j < 16; j++)
            {
                y[j] = d * values[b.Qs[j] & 0xF];
                y[j + 16] = d * values[b.Qs[j] >> 4];
            }
        }
    }

    /// <summary>quantize_iq4_nl without importance weights (what llama-quantize runs; see <see cref="IQ4NonLinear.Quantize"/>).</summary>
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst)
    {
        var blocks = MemoryMarshal.Cast<byte, BlockIQ4_NL>(dst);
        Span<byte> indices = stackalloc byte[BlockIQ4_NL.Size];
        Span<byte> unusedScales = stackalloc byte[1];
        Span<float> scratch = stackalloc float[1];
        for (var i = 0; i < src.Length / BlockIQ4_NL.Size; i++)
        {
            ref var b = ref blocks[i];
            b.D = ToHalf(IQ4NonLinear.Quantize(src.Slice(i * BlockIQ4_NL.Size, BlockIQ4_NL.Size), indices, unusedScales, scratch));
            for (var j = 0; j < 16; j++)
                b.Qs[j] = (byte)(indices[j] | (indices[j + 16] << 4));
        }
    }

    /// <summary>Σ_blocks (d_w·d_a)·Σ T[q]·a.</summary>
    public static float Dot(ReadOnlySpan<byte> weights, ReadOnlySpan<byte> activations, int n)
    {
        var values = IQ4NonLinear.Values;
        var w = MemoryMarshal.Cast<byte, BlockIQ4_NL>(weights);
        var a = MemoryMarshal.Cast<byte, BlockQ8_0>(activations);
        var sum = 0f;
        for (var i = 0; i < n / BlockIQ4_NL.Size; i++)
        {
            var wb = w[i];
            var ab = a[i];
            var sumi = 0;
            for (var j = 0; j < 16; j++)
            {
                sumi += values[wb.Qs[j] & 0xF] * ab.Qs[j];
                sumi += values[wb.Qs[j] >> 4] * ab.Qs[j + 16];
            }
            sum += ToFloat(wb.D) * ToFloat(ab.D) * sumi;
        }
        return sum;
    }
}
