using System.Runtime.InteropServices;
using static Lutra.Core.Quants.QuantMath;

namespace Lutra.Core.Quants;

/// <summary>
/// Q2_K (84 B / 256 elements): 16 sub-blocks of 16, each with a 4-bit scale (low nibble of <c>Scales</c>) and a
/// 4-bit min (high nibble); value = d·sc·q − dmin·m with q ∈ [0, 3]. Element 128h + 32k + l has its quant in bits
/// 2k..2k+1 of <c>Qs[32h + l]</c>.
/// </summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
public unsafe struct BlockQ2_K
{
    public const int Size = 256;
    public fixed byte Scales[Size / 16];
    public fixed byte Qs[Size / 4];
    public Half D;
    public Half DMin;
}

public static unsafe class Q2_KReference
{
    public static readonly ReferenceKernels Kernels = new(Dequantize, Quantize, GgmlType.Q8_K, Dot);

    internal static int Quant(in BlockQ2_K b, int e) => (b.Qs[32 * (e / 128) + e % 32] >> (2 * (e % 128 / 32))) & 3;

    public static void Dequantize(ReadOnlySpan<byte> src, Span<float> dst)
    {
        var blocks = MemoryMarshal.Cast<byte, BlockQ2_K>(src);
        for (var i = 0; i < dst.Length / BlockQ2_K.Size; i++)
        {
            ref readonly var b = ref blocks[i];
            var d = ToFloat(b.D);
            var dmin = ToFloat(b.DMin);
            var y = dst.Slice(i * BlockQ2_K.Size, BlockQ2_K.Size);
            for (var s = 0; s < 16; s++)
            {
                var dl = d * (b.Scales[s] & 0xF);
                var ml = dmin * (b.Scales[s] >> 4);
                for (var e = 16 * s; e < 16 * s + 16; e++)
                    y[e] = dl * Quant(b, e) - ml;
            }
        }
    }

    /// <summary>
    /// quantize_row_q2_K_ref: per sub-block an affine fit (make_qkx2_quants, nmax 3, weights |x|, absolute error),
    /// then 4-bit scales and mins relative to the largest, then requantization with the stored values.
    /// </summary>
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst)
    {
        var blocks = MemoryMarshal.Cast<byte, BlockQ2_K>(dst);
        Span<byte> l = stackalloc byte[BlockQ2_K.Size];
        Span<byte> laux = stackalloc byte[16];
        Span<float> weights = stackalloc float[16];
        Span<float> mins = stackalloc float[16];
        Span<float> scales = stackalloc float[16];
        const float q4scale = 15f;
        for (var i = 0; i < src.Length / BlockQ2_K.Size; i++)
        {
            var x = src.Slice(i * BlockQ2_K.Size, BlockQ2_K.Size);
            ref var b = ref blocks[i];
            float maxScale = 0, maxMin = 0;
            for (var j = 0; j < 16; j++)
            {
                var xs = x.Slice(16 * j, 16);
                for (var k = 0; k < 16; k++)
                    weights[k] = MathF.Abs(xs[k]);
                scales[j] = KQuantSearch.MakeQkx2Quants(16, 3, xs, weights, l.Slice(16 * j, 16), out mins[j], laux, -0.5f, 0.1f, 15, true);
                if (scales[j] > maxScale) maxScale = scales[j];
                if (mins[j] > maxMin) maxMin = mins[j];
            }

            if (maxScale > 0)
            {
                var iscale = q4scale / maxScale;
                for (var j = 0; j < 16; j++)
                    b.Scales[j] = (byte)NearestInt(iscale * scales[j]);
                b.D = ToHalf(maxScale / q4scale);
            }
            else
            {
                for (var j = 0; j < 16; j++)
                    b.Scales[j] = 0;
                b.D = ToHalf(0f);
            }
            if (maxMin > 0)
            {
                var iscale = q4scale / maxMin;
                for (var j = 0; j < 16; j++)
                    b.Scales[j] |= (byte)(NearestInt(iscale * mins[j]) << 4);
                b.DMin = ToHalf(maxMin / q4scale);
            }
            else
            {
                b.DMin = ToHalf(0f);
            }

            for (var j = 0; j < 16; j++)
            {
                var d = ToFloat(b.D) * (b.Scales[j] & 0xF);
                if (d == 0)
                    continue;
                var dm = ToFloat(b.DMin) * (b.Scales[j] >> 4);
                for (var k = 0; k < 16; k++)
                    l[16 * j + k] = (byte)Math.Clamp(NearestInt((x[16 * j + k] + dm) / d), 0, 3);
            }

            for (var h = 0; h < 2; h++)
                for (var m = 0; m < 32; m++)
                {
                    var e = 128 * h + m;
                    b.Qs[32 * h + m] = (byte)(l[e] | (l[e + 32] << 2) | (l[e + 64] << 4) | (l[e + 96] << 6));
                }
        }
    }

    /// <summary>Per super-block (d_w·d_a)·Σ_s sc_s·Σ q·a − (dmin_w·d_a)·Σ_s m_s·bsums[s].</summary>
    public static float Dot(ReadOnlySpan<byte> weights, ReadOnlySpan<byte> activations, int n)
    {
        var w = MemoryMarshal.Cast<byte, BlockQ2_K>(weights);
        var a = MemoryMarshal.Cast<byte, BlockQ8_K>(activations);
        var sum = 0f;
        for (var i = 0; i < n / BlockQ2_K.Size; i++)
        {
            ref readonly var wb = ref w[i];
            ref readonly var ab = ref a[i];
            int sumi = 0, summ = 0;
            for (var s = 0; s < 16; s++)
            {
                var dot = 0;
                for (var e = 16 * s; e < 16 * s + 16; e++)
                    dot += Quant(wb, e) * ab.Qs[e];
                sumi += (wb.Scales[s] & 0xF) * dot;
                summ += (wb.Scales[s] >> 4) * ab.Bsums[s];
            }
            var dall = ab.D * ToFloat(wb.D);
            var dmin = ab.D * ToFloat(wb.DMin);
            sum += dall * sumi - dmin * summ;
        }
        return sum;
    }
}
