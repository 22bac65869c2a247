using System.Runtime.InteropServices;
using static Lutra.Core.Quants.QuantMath;

namespace Lutra.Core.Quants;

/// <summary>
/// Q5_K (176 B / 256 elements): Q4_K plus a fifth bit per element: element 64c + l (l &lt; 32) takes bit 2c of
/// <c>Qh[l]</c>, element 64c + 32 + l bit 2c + 1. q ∈ [0, 31]; value = (d·sc)·q − (dmin·m).
/// </summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
public unsafe struct BlockQ5_K
{
    public const int Size = 256;
    public Half D;
    public Half DMin;
    public fixed byte Scales[12];
    public fixed byte Qh[Size / 8];
    public fixed byte Qs[Size / 2];
}

public static unsafe class Q5_KReference
{
    public static readonly ReferenceKernels Kernels = new(Dequantize, Quantize, GgmlType.Q8_K, Dot);

    internal static void ScalesAndMins(in BlockQ5_K b, Span<int> scales, Span<int> mins)
    {
        Span<byte> packed = stackalloc byte[12];
        for (var k = 0; k < 12; k++)
            packed[k] = b.Scales[k];
        for (var j = 0; j < 8; j++)
            KQuantSearch.GetScaleMinK4(j, packed, out scales[j], out mins[j]);
    }

    internal static int Quant(in BlockQ5_K b, int e)
    {
        var low = (b.Qs[32 * (e / 64) + e % 32] >> (4 * (e % 64 / 32))) & 0xF;
        var high = (b.Qh[e % 32] >> (e / 32)) & 1;
        return low + 16 * high;
    }

    public static void Dequantize(ReadOnlySpan<byte> src, Span<float> dst)
    {
        var blocks = MemoryMarshal.Cast<byte, BlockQ5_K>(src);
        Span<int> sc = stackalloc int[8];
        Span<int> m = stackalloc int[8];
        for (var i = 0; i < dst.Length / BlockQ5_K.Size; i++)
        {
            ref readonly var b = ref blocks[i];
            ScalesAndMins(b, sc, m);
            var d = ToFloat(b.D);
            var dmin = ToFloat(b.DMin);
            var y = dst.Slice(i * BlockQ5_K.Size, BlockQ5_K.Size);
            for (var j = 0; j < 8; j++)
            {
                var dl = d * sc[j];
                var ml = dmin * m[j];
                for (var e = 32 * j; e < 32 * j + 32; e++)
                    y[e] = dl * Quant(b, e) - ml;
            }
        }
    }

    /// <summary>quantize_row_q5_K_ref: as Q4_K with nmax 31 and 16 candidates (rmin −0.5).</summary>
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst) => KQuantAffine.Quantize(src, dst, is5Bit: true);

    /// <summary>As Q4_K's dot product, with 5-bit quants.</summary>
    public static float Dot(ReadOnlySpan<byte> weights, ReadOnlySpan<byte> activations, int n)
    {
        var w = MemoryMarshal.Cast<byte, BlockQ5_K>(weights);
        var a = MemoryMarshal.Cast<byte, BlockQ8_K>(activations);
        Span<int> sc = stackalloc int[8];
        Span<int> m = stackalloc int[8];
        var sum = 0f;
        for (var i = 0; i < n / BlockQ5_K.Size; i++)
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

/// <summary>The shared quantizer of Q4_K and Q5_K (quantize_row_q4_K_ref / quantize_row_q5_K_ref differ only in nmax and the search grid).</summary>
internal static unsafe class KQuantAffine
{
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst, bool is5Bit)
    {
        var nmax = is5Bit ? 31 : 15;
        var rmin = is5Bit ? -0.5f : -1f;
        var nstep = is5Bit ? 15 : 20;
        var blockBytes = is5Bit ? sizeof(BlockQ5_K) : sizeof(BlockQ4_K);

        Span<byte> l = stackalloc byte[256];
        Span<byte> laux = stackalloc byte[32];
        Span<float> weights = stackalloc float[32];
        Span<float> mins = stackalloc float[8];
        Span<float> scales = stackalloc float[8];
        Span<byte> ls = stackalloc byte[8];
        Span<byte> lm = stackalloc byte[8];
        Span<byte> packed = stackalloc byte[12];

        for (var i = 0; i < src.Length / 256; i++)
        {
            var x = src.Slice(i * 256, 256);
            float maxScale = 0, maxMin = 0;
            for (var j = 0; j < 8; j++)
            {
                var xs = x.Slice(32 * j, 32);
                var sumX2 = 0f;
                for (var k = 0; k < 32; k++)
                    sumX2 += xs[k] * xs[k];
                var avX = MathF.Sqrt(sumX2 / 32);
                for (var k = 0; k < 32; k++)
                    weights[k] = avX + MathF.Abs(xs[k]);
                scales[j] = KQuantSearch.MakeQkx2Quants(32, nmax, xs, weights, l.Slice(32 * j, 32), out mins[j], laux, rmin, 0.1f, nstep, false);
                if (scales[j] > maxScale) maxScale = scales[j];
                if (mins[j] > maxMin) maxMin = mins[j];
            }

            var invScale = maxScale > 0 ? 63f / maxScale : 0f;
            var invMin = maxMin > 0 ? 63f / maxMin : 0f;
            for (var j = 0; j < 8; j++)
            {
                // C assigns nearest_int to a uint8_t before clamping to 63.
                ls[j] = Math.Min((byte)63, (byte)NearestInt(invScale * scales[j]));
                lm[j] = Math.Min((byte)63, (byte)NearestInt(invMin * mins[j]));
            }
            KQuantSearch.PackScaleMinK4(ls, lm, packed);
            var dHalf = ToHalf(maxScale / 63f);
            var dminHalf = ToHalf(maxMin / 63f);

            for (var j = 0; j < 8; j++)
            {
                KQuantSearch.GetScaleMinK4(j, packed, out var sc, out var m);
                var d = ToFloat(dHalf) * sc;
                if (d == 0)
                    continue;
                var dm = ToFloat(dminHalf) * m;
                for (var k = 0; k < 32; k++)
                    l[32 * j + k] = (byte)Math.Clamp(NearestInt((x[32 * j + k] + dm) / d), 0, nmax);
            }

            var block = dst.Slice(i * blockBytes, blockBytes);
            if (is5Bit)
            {
                ref var b = ref MemoryMarshal.AsRef<BlockQ5_K>(block);
                b.D = dHalf;
                b.DMin = dminHalf;
                for (var k = 0; k < 12; k++)
                    b.Scales[k] = packed[k];
                for (var k = 0; k < 32; k++)
                    b.Qh[k] = 0;
                for (var c = 0; c < 4; c++)
                    for (var k = 0; k < 32; k++)
                    {
                        int l1 = l[64 * c + k], l2 = l[64 * c + 32 + k];
                        if (l1 > 15)
                        {
                            l1 -= 16;
                            b.Qh[k] |= (byte)(1 << (2 * c));
                        }
                        if (l2 > 15)
                        {
                            l2 -= 16;
                            b.Qh[k] |= (byte)(2 << (2 * c));
                        }
                        b.Qs[32 * c + k] = (byte)(l1 | (l2 << 4));
                    }
            }
            else
            {
                ref var b = ref MemoryMarshal.AsRef<BlockQ4_K>(block);
                b.D = dHalf;
                b.DMin = dminHalf;
                for (var k = 0; k < 12; k++)
                    b.Scales[k] = packed[k];
                for (var c = 0; c < 4; c++)
                    for (var k = 0; k < 32; k++)
                        b.Qs[32 * c + k] = (byte)(l[64 * c + k] | (l[64 * c + 32 + k] << 4));
            }
        }
    }
}
