using System.Runtime.InteropServices;
using static Lutra.Core.Quants.QuantMath;

namespace Lutra.Core.Quants;

/// <summary>
/// Q4_K (144 B / 256 elements): 8 sub-blocks of 32 with 6-bit scales and mins (packed, see
/// <see cref="KQuantSearch.GetScaleMinK4"/>); value = (d·sc)·q − (dmin·m), q ∈ [0, 15]. In chunk c of 64
/// elements, <c>Qs[32c + l]</c> holds element 64c + l in its low nibble and 64c + 32 + l in its high nibble.
/// </summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
public unsafe struct BlockQ4_K
{
    public const int Size = 256;
    public Half D;
    public Half DMin;
    public fixed byte Scales[12];
    public fixed byte Qs[Size / 2];

}

public static unsafe class Q4_KReference
{
    public static readonly ReferenceKernels Kernels = new(Dequantize, Quantize, GgmlType.Q8_K, Dot);

    /// <summary>Unpacks the eight 6-bit scales and mins.</summary>
    internal static void ScalesAndMins(in BlockQ4_K b, Span<int> scales, Span<int> mins)
    {
        Span<byte> packed = stackalloc byte[12];
        for (var k = 0; k < 12; k++)
            packed[k] = b.Scales[k];
        for (var j = 0; j < 8; j++)
            KQuantSearch.GetScaleMinK4(j, packed, out scales[j], out mins[j]);
    }

    internal static int Quant(in BlockQ4_K b, int e) => (b.Qs[32 * (e / 64) + e % 32] >> (4 * (e % 64 / 32))) & 0xF;

    public static void Dequantize(ReadOnlySpan<byte> src, Span<float> dst)
    {
        var blocks = MemoryMarshal.Cast<byte, BlockQ4_K>(src);
        Span<int> sc = stackalloc int[8];
        Span<int> m = stackalloc int[8];
        for (var i = 0; i < dst.Length / BlockQ4_K.Size; i++)
        {
            ref readonly var b = ref blocks[i];
            ScalesAndMins(b, sc, m);
            var d = ToFloat(b.D);
            var dmin = ToFloat(b.DMin);
            var y = dst.Slice(i * BlockQ4_K.Size, BlockQ4_K.Size);
            for (var j = 0; j < 8; j++)
            {
                var dl = d * sc[j];
                var ml = dmin * m[j];
                for (var e = 32 * j; e < 32 * j + 32; e++)
                    y[e] = dl * Quant(b, e) - ml;
            }
        }
    }

    /// <summary>
    /// quantize_row_q4_K_ref: per 32-element sub-block an affine fit (make_qkx2_quants, nmax 15, weights
    /// rms(x) + |x|, squared error, 21 candidates), 6-bit scales and mins, requantization with the stored values.
    /// </summary>
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst) => KQuantAffine.Quantize(src, dst, is5Bit: false);

    /// <summary>Per super-block (d_w·d_a)·Σ_j sc_j·Σ q·a − (dmin_w·d_a)·Σ_j m_j·(bsums[2j] + bsums[2j+1]).</summary>
    public static float Dot(ReadOnlySpan<byte> weights, ReadOnlySpan<byte> activations, int n)
    {
        var w = MemoryMarshal.Cast<byte, BlockQ4_K>(weights);
        var a = MemoryMarshal.Cast<byte, BlockQ8_K>(activations);
        Span<int> sc = stackalloc int[8];
        Span<int> m = stackalloc int[8];
        var sum = 0f;
        for (var i = 0; i < n / BlockQ4_K.Size; i++)
        {
            ref readonly var wb = ref w[i];
            ref readonly var ab = ref a[i];
            ScalesAndMins(wb, sc, m);
            int sumi = 0, summ = 0;
            for (var j = 0; j < 8; j++)
            {
                var dot = 0;
                for (var e = 32 * j; e < 32 * j + 32; e++)
                    dot += Quant(wb, e) * ab.Qs[e];
                sumi += sc[j] * dot;
                summ += m[j] * (ab.Bsums[2 * j] + ab.Bsums[2 * j + 1]);
            }
            sum += ToFloat(wb.D) * ab.D * sumi - ToFloat(wb.DMin) * ab.D * summ;
        }
        return sum;
    }
}
