using static Lutra.Core.Quants.QuantMath;

namespace Lutra.Core.Quants;

/// <summary>
/// What IQ4_NL and IQ4_XS share: the 16-entry non-linear grid (kvalues_iq4nl) and ggml's quantizer for it,
/// quantize_row_iq4_nl_impl with ntry = 7 and no importance weights, ported operation for operation.
/// </summary>
internal static class IQ4NonLinear
{
    /// <summary>kvalues_iq4nl: denser near zero, where most weights are.</summary>
    public static ReadOnlySpan<sbyte> Values => [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];

    private const int Tries = 7;

    /// <summary>
    /// best_index_int8 (llama.cpp at c392e50): the index of the grid value nearest <paramref name="x"/>; a binary
    /// search for the bracketing pair, then the lower one only if strictly nearer (exact ties go up).
    /// </summary>
    public static int BestIndex(float x)
    {
        var values = Values;
        if (x <= values[0]) return 0;
        if (x >= values[15]) return 15;
        int ml = 0, mu = 15;
        while (mu - ml > 1)
        {
            var mid = (ml + mu) / 2;
            if (x < values[mid]) mu = mid;
            else ml = mid;
        }
        return x - values[mu - 1] < values[mu] - x ? mu - 1 : mu;
    }

    /// <summary>
    /// Quantizes one super-block of <paramref name="x"/>.Length elements (32 for IQ4_NL, 256 for IQ4_XS) in
    /// 32-element blocks. Per block: weights x², a first scale from the signed largest element (d = −max/−127),
    /// then 15 trial inverse scales (k + T[0])/max, k = −7..7, keeping the best weighted least-squares fit.
    /// With one block, d is that fit and the indices are recomputed with 1/d. With several (IQ4_XS), d = −max/32
    /// over the block scales, each block gets a 6-bit scale l ∈ [−32, 31] and its indices are recomputed with
    /// 1/(d·l). Returns d (f32, before rounding to f16); <paramref name="blockScales"/> receives l + 32 per block.
    /// </summary>
    public static float Quantize(ReadOnlySpan<float> x, Span<byte> indices, Span<byte> blockScales, Span<float> scratch)
    {
        var values = Values;
        var blocks = x.Length / 32;
        var scales = scratch[..blocks];
        float maxScale = 0, amaxScale = 0;
        for (var ib = 0; ib < blocks; ib++)
        {
            var xb = x.Slice(32 * ib, 32);
            var lb = indices.Slice(32 * ib, 32);
            var max = SignedAbsMax(xb, out var amax);
            if (amax < KQuantSearch.GroupMaxEps)
            {
                scales[ib] = 0;
                continue;
            }
            var d = -max / values[0];
            var id = 1 / d;
            float sumqx = 0, sumq2 = 0;
            for (var j = 0; j < 32; j++)
            {
                var l = BestIndex(id * xb[j]);
                lb[j] = (byte)l;
                float q = values[l];
                var w = xb[j] * xb[j];
                sumqx += w * q * xb[j];
                sumq2 += w * q * q;
            }
            d = sumqx / sumq2;
            var best = d * sumqx;
            for (var itry = -Tries; itry <= Tries; itry++)
            {
                id = (itry + values[0]) / max;
                sumqx = sumq2 = 0;
                for (var j = 0; j < 32; j++)
                {
                    float q = values[BestIndex(id * xb[j])];
                    var w = xb[j] * xb[j];
                    sumqx += w * q * xb[j];
                    sumq2 += w * q * q;
                }
                if (sumq2 > 0 && sumqx * sumqx > best * sumq2)
                {
                    d = sumqx / sumq2;
                    best = d * sumqx;
                }
            }
            scales[ib] = d;
            var absD = MathF.Abs(d);
            if (absD > amaxScale)
            {
                amaxScale = absD;
                maxScale = d;
            }
        }

        if (blocks == 1)
        {
            var id = scales[0] != 0 ? 1 / scales[0] : 0;
            for (var j = 0; j < 32; j++)
                indices[j] = (byte)BestIndex(id * x[j]);
            return scales[0];
        }

        var dSuper = -maxScale / 32;
        var idSuper = dSuper != 0 ? 1 / dSuper : 0f;
        for (var ib = 0; ib < blocks; ib++)
        {
            var l = Math.Clamp(NearestInt(idSuper * scales[ib]), -32, 31);
            var dl = dSuper * l;
            var idl = dl != 0 ? 1 / dl : 0f;
            for (var j = 0; j < 32; j++)
                indices[32 * ib + j] = (byte)BestIndex(idl * x[32 * ib + j]);
            blockScales[ib] = (byte)(l + 32);
        }
        return dSuper;
    }
}
