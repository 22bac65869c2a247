using static Lutra.Core.Quants.QuantMath;

namespace Lutra.Core.Quants;

/// <summary>
/// The scale searches of ggml's K-quant reference quantizers (ggml-quants.c), ported operation for operation:
/// every sum runs sequentially from index 0 in f32, every product keeps C's left-to-right order, integers
/// enter products as floats exactly where C converts them, comparisons keep their strictness, and
/// <see cref="NearestInt"/> rounds half to even. Any change of order changes some bytes of the output.
/// </summary>
internal static class KQuantSearch
{
    /// <summary>
    /// make_qkx2_quants: fits x ≈ scale·L + min with L ∈ [0, nmax] and min ≤ 0 by trying nstep + 1 inverse
    /// scales around nmax/(max − min) and keeping the weighted least-squares fit with the lowest weighted error
    /// (absolute error when <paramref name="useMad"/>). Returns the scale; <paramref name="negatedMin"/> = −min ≥ 0.
    /// </summary>
    public static float MakeQkx2Quants(int n, int nmax, ReadOnlySpan<float> x, ReadOnlySpan<float> weights,
        Span<byte> l, out float negatedMin, Span<byte> laux, float rmin, float rdelta, int nstep, bool useMad)
    {
        var min = x[0];
        var max = x[0];
        var sumW = weights[0];
        var sumX = sumW * x[0];
        for (var i = 1; i < n; i++)
        {
            if (x[i] < min) min = x[i];
            if (x[i] > max) max = x[i];
            var w = weights[i];
            sumW += w;
            sumX += w * x[i];
        }
        if (min > 0) min = 0;
        if (max == min)
        {
            l[..n].Clear();
            negatedMin = -min;
            return 0f;
        }

        var iscale = nmax / (max - min);
        var scale = 1 / iscale;
        var bestError = 0f;
        for (var i = 0; i < n; i++)
        {
            l[i] = (byte)Math.Clamp(NearestInt(iscale * (x[i] - min)), 0, nmax);
            var diff = scale * l[i] + min - x[i];
            diff = useMad ? MathF.Abs(diff) : diff * diff;
            bestError += weights[i] * diff;
        }

        // Note: an accepted candidate replaces min, and later candidates quantize relative to that new min
        // (ggml reuses the variable; formats.md §2.7 says otherwise, the C code is what llama-quantize ran).
        for (var step = 0; step <= nstep; step++)
        {
            iscale = (rmin + rdelta * step + nmax) / (max - min);
            float sumL = 0, sumL2 = 0, sumXL = 0;
            for (var i = 0; i < n; i++)
            {
                var li = Math.Clamp(NearestInt(iscale * (x[i] - min)), 0, nmax);
                laux[i] = (byte)li;
                var w = weights[i];
                sumL += w * li;
                sumL2 += w * li * li;
                sumXL += w * li * x[i];
            }
            var det = sumW * sumL2 - sumL * sumL;
            if (det > 0)
            {
                var thisScale = (sumW * sumXL - sumX * sumL) / det;
                var thisMin = (sumL2 * sumX - sumL * sumXL) / det;
                if (thisMin > 0)
                {
                    thisMin = 0;
                    thisScale = sumXL / sumL2;
                }
                var error = 0f;
                for (var i = 0; i < n; i++)
                {
                    var diff = thisScale * laux[i] + thisMin - x[i];
                    diff = useMad ? MathF.Abs(diff) : diff * diff;
                    error += weights[i] * diff;
                }
                if (error < bestError)
                {
                    laux[..n].CopyTo(l);
                    bestError = error;
                    scale = thisScale;
                    min = thisMin;
                }
            }
        }
        negatedMin = -min;
        return scale;
    }

    /// <summary>
    /// make_qx_quants with rmse_type 1 and no importance weights (Q6_K): symmetric L ∈ [−nmax, nmax) stored with
    /// +nmax bias, weights x², trying 19 inverse scales −(nmax + 0.1·k)/max. Returns the (signed) scale.
    /// </summary>
    public static float MakeQxQuants(int n, int nmax, ReadOnlySpan<float> x, Span<sbyte> l)
    {
        var max = SignedAbsMax(x[..n], out var amax);
        if (amax < GroupMaxEps)
        {
            l[..n].Clear();
            return 0f;
        }
        var iscale = -nmax / max;
        float sumLX = 0, sumL2 = 0;
        for (var i = 0; i < n; i++)
        {
            var li = Math.Clamp(NearestInt(iscale * x[i]), -nmax, nmax - 1);
            l[i] = (sbyte)(li + nmax);
            var w = x[i] * x[i];
            sumLX += w * x[i] * li;
            sumL2 += w * li * li;
        }
        var scale = sumL2 != 0 ? sumLX / sumL2 : 0f;
        var best = scale * sumLX;
        for (var step = -9; step <= 9; step++)
        {
            if (step == 0)
                continue;
            iscale = -(nmax + 0.1f * step) / max;
            sumLX = sumL2 = 0;
            for (var i = 0; i < n; i++)
            {
                var li = Math.Clamp(NearestInt(iscale * x[i]), -nmax, nmax - 1);
                var w = x[i] * x[i];
                sumLX += w * x[i] * li;
                sumL2 += w * li * li;
            }
            if (sumL2 > 0 && sumLX * sumLX > best * sumL2)
            {
                for (var i = 0; i < n; i++)
                    l[i] = (sbyte)(nmax + Math.Clamp(NearestInt(iscale * x[i]), -nmax, nmax - 1));
                scale = sumLX / sumL2;
                best = scale * sumLX;
            }
        }
        return scale;
    }

    /// <summary>
    /// make_q3_quants with do_rmse (Q3_K): start from L = round(−nmax·x/max), then up to 5 passes of coordinate
    /// descent on the weighted (w = x²) least-squares objective. L ∈ [0, 2·nmax) with +nmax bias — except an
    /// all-zero group, which gets raw zeros. Returns Σwxl/Σwl².
    /// </summary>
    public static float MakeQ3Quants(int n, int nmax, ReadOnlySpan<float> x, Span<sbyte> l)
    {
        var max = SignedAbsMax(x[..n], out var amax);
        if (amax < GroupMaxEps)
        {
            l[..n].Clear();
            return 0f;
        }
        var iscale = -nmax / max;
        float sumLX = 0, sumL2 = 0;
        for (var i = 0; i < n; i++)
        {
            var li = Math.Clamp(NearestInt(iscale * x[i]), -nmax, nmax - 1);
            l[i] = (sbyte)li;
            var w = x[i] * x[i];
            sumLX += w * x[i] * li;
            sumL2 += w * li * li;
        }
        for (var pass = 0; pass < 5; pass++)
        {
            var changed = 0;
            for (var i = 0; i < n; i++)
            {
                var w = x[i] * x[i];
                var slx = sumLX - w * x[i] * l[i];
                if (slx > 0)
                {
                    var sl2 = sumL2 - w * l[i] * l[i];
                    var newL = Math.Clamp(NearestInt(x[i] * sl2 / slx), -nmax, nmax - 1);
                    if (newL != l[i])
                    {
                        slx += w * x[i] * newL;
                        sl2 += w * newL * newL;
                        if (sl2 > 0 && slx * slx * sumL2 > sumLX * sumLX * sl2)
                        {
                            l[i] = (sbyte)newL;
                            sumLX = slx;
                            sumL2 = sl2;
                            changed++;
                        }
                    }
                }
            }
            if (changed == 0)
                break;
        }
        for (var i = 0; i < n; i++)
            l[i] += (sbyte)nmax;
        return sumL2 > 0 ? sumLX / sumL2 : 0f;
    }

    /// <summary>GROUP_MAX_EPS: groups whose largest magnitude is below this count as all zero.</summary>
    public const float GroupMaxEps = 1e-15f;

    /// <summary>
    /// get_scale_min_k4: the 6-bit scale and min of 32-element sub-block <paramref name="j"/> from Q4_K/Q5_K's
    /// 12 packed bytes (bytes 0–3: sc 0..3 + top bits of sc 4..7; 4–7: m 0..3 + top bits of m 4..7;
    /// 8–11: low nibbles of sc 4..7 and m 4..7).
    /// </summary>
    public static void GetScaleMinK4(int j, ReadOnlySpan<byte> q, out int scale, out int min)
    {
        if (j < 4)
        {
            scale = q[j] & 63;
            min = q[j + 4] & 63;
        }
        else
        {
            scale = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
            min = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
        }
    }

    /// <summary>Inverse of <see cref="GetScaleMinK4"/> for all eight sub-blocks (values already ≤ 63).</summary>
    public static void PackScaleMinK4(ReadOnlySpan<byte> scales, ReadOnlySpan<byte> mins, Span<byte> q)
    {
        for (var j = 0; j < 8; j++)
        {
            var ls = scales[j];
            var lm = mins[j];
            if (j < 4)
            {
                q[j] = ls;
                q[j + 4] = lm;
            }
            else
            {
                q[j + 4] = (byte)((ls & 0xF) | ((lm & 0xF) << 4));
                q[j - 4] |= (byte)((ls >> 4) << 6);
                q[j] |= (byte)((lm >> 4) << 6);
            }
        }
    }
}
