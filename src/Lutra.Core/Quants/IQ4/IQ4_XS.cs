using System.Runtime.InteropServices;
using static Lutra.Core.Quants.QuantMath;

namespace Lutra.Core.Quants;

/// <summary>
/// IQ4_XS (136 B / 256 elements): eight IQ4_NL-style 32-element blocks sharing one f16 d, each with a 6-bit
/// scale ls (low 4 bits in a nibble of <c>ScalesL[b/2]</c>, top 2 bits at bit 2b of <c>ScalesH</c>):
/// element 32b + j = d·(ls − 32)·T[Qs[16b + j] &amp; 0xF], element 32b + 16 + j uses the high nibble.
/// </summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
public unsafe struct BlockIQ4_XS
{
    public const int Size = 256;
    public Half D;
    public ushort ScalesH;
    public fixed byte ScalesL[Size / 64];
    public fixed byte Qs[Size / 2];
}

public static unsafe class IQ4_XSReference
{
    public static readonly ReferenceKernels Kernels = new(Dequantize, Quantize, GgmlType.Q8_K, Dot);

    internal static int Scale(in BlockIQ4_XS b, int ib) =>
        (((b.ScalesL[ib / 2] >> (4 * (ib % 2))) & 0xF) | (((b.ScalesH >> (2 * ib)) & 3) << 4)) - 32;

    internal static int Index(in BlockIQ4_XS b, int e) => (b.Qs[16 * (e / 32) + e % 16] >> (4 * (e % 32 / 16))) & 0xF;

    public static void Dequantize(ReadOnlySpan<byte> src, Span<float> dst)
    {
        var values = IQ4NonLinear.Values;
        var blocks = MemoryMarshal.Cast<byte, BlockIQ4_XS>(src);
        for (var i = 0; i < dst.Length / BlockIQ4_XS.Size; i++)
        {
            ref readonly var b = ref blocks[i];
            var d = ToFloat(b.D);
            var y = dst.Slice(i * BlockIQ4_XS.Size, BlockIQ4_XS.Size);
            for (var ib = 0; ib < 8; ib++)
            {
                var dl = d * Scale(b, ib);
                for (var e = 32 * ib; e < 32 * ib + 32; e++)
                    y[e] = dl * values[Index(b, e)];
            }
        }
    }

    /// <summary>quantize_iq4_xs without importance weights (see <see cref="IQ4NonLinear.Quantize"/>).</summary>
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst)
    {
        var blocks = MemoryMarshal.Cast<byte, BlockIQ4_XS>(dst);
        Span<byte> indices = stackalloc byte[BlockIQ4_XS.Size];
        Span<byte> scales = stackalloc byte[8];
        Span<float> scratch = stackalloc float[8];
        for (var i = 0; i < src.Length / BlockIQ4_XS.Size; i++)
        {
            ref var b = ref blocks[i];
            b.D = ToHalf(IQ4NonLinear.Quantize(src.Slice(i * BlockIQ4_XS.Size, BlockIQ4_XS.Size), indices, scales, scratch));
            b.ScalesH = 0;
            for (var ib = 0; ib < 8; ib++)
            {
                if (ib % 2 == 0)
                    b.ScalesL[ib / 2] = (byte)(scales[ib] & 0xF);
                else
                    b.ScalesL[ib / 2] |= (byte)((scales[ib] & 0xF) << 4);
                b.ScalesH |= (ushort)((scales[ib] >> 4) << (2 * ib));
            }
            for (var ib = 0; ib < 8; ib++)
                for (var j = 0; j < 16; j++)
                    b.Qs[16 * ib + j] = (byte)(indices[32 * ib + j] | (indices[32 * ib + 16 + j] << 4));
        }
    }

    /// <summary>Per super-block (d_w·d_a)·Σ_b (ls_b − 32)·Σ T[q]·a.</summary>
    public static float Dot(ReadOnlySpan<byte> weights, ReadOnlySpan<byte> activations, int n)
    {
        var values = IQ4NonLinear.Values;
        var w = MemoryMarshal.Cast<byte, BlockIQ4_XS>(weights);
        var a = MemoryMarshal.Cast<byte, BlockQ8_K>(activations);
        var sum = 0f;
        for (var i = 0; i < n / BlockIQ4_XS.Size; i++)
        {
            ref readonly var wb = ref w[i];
            ref readonly var ab = ref a[i];
            var sumi = 0;
            for (var ib = 0; ib < 8; ib++)
            {
                var dot = 0;
                for (var e = 32 * ib; e < 32 * ib + 32; e++)
                    dot += values[Index(wb, e)] * ab.Qs[e];
                sumi += Scale(wb, ib) * dot;
            }
            sum += ToFloat(wb.D) * ab.D * sumi;
        }
        return sum;
    }
}
