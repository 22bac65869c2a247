using System.Runtime.CompilerServices;
using Lutra.Core.Quants;

namespace Lutra.Core.Kernels;

/// <summary>
/// The scalar per-super-block facts of a weight format paired with Q8_K activations, used by the Vector128 kernels
/// and the AVX2 ternary kernels (the AVX2 and AVX-512 K-quant kernels unpack scales in their own registers). <see cref="Scales"/> writes one int16 scale per 16 elements and returns the f32 factor d of the integer
/// sum; a constant code offset comes back as the integer <c>offset</c> (exact, like the reference's signed codes)
/// and mins as the float <c>min</c>, both from the activation block sums: the super-block's dot is
/// d_a·(d·(Σ scale·code·a − offset) − min). Formats with an offset (<see cref="HasOffset"/>) reduce their integer
/// lanes once per super-block so that (sum − offset) is exact, as the reference's signed codes are.
/// </summary>
internal unsafe interface ISuperBlockFormat
{
    static abstract GgmlType Type { get; }
    static abstract int BlockBytes { get; }
    static abstract bool HasOffset { get; }
    static abstract float Scales(byte* w, short* bsums, short* scales, out int offset, out float min);
}

/// <summary>Q2_K: codes 0..3, 4-bit scale and min per 16 elements.</summary>
internal readonly unsafe struct Q2_KFormat : ISuperBlockFormat
{
    public static GgmlType Type => GgmlType.Q2_K;
    public static int BlockBytes => 84;
    public static bool HasOffset => false;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Scales(byte* w, short* bsums, short* scales, out int offset, out float min)
    {
        var summ = 0;
        for (var s = 0; s < 16; s++)
        {
            scales[s] = (short)(w[s] & 15);
            summ += (w[s] >> 4) * bsums[s];
        }
        offset = 0;
        min = HalfLookup.ToSingle(w + 82) * summ;
        return HalfLookup.ToSingle(w + 80);
    }
}

/// <summary>Q3_K: codes 0..7 = low two bits | high-mask bit « 2, value code − 4; signed 6-bit scales.</summary>
internal readonly unsafe struct Q3_KFormat : ISuperBlockFormat
{
    public static GgmlType Type => GgmlType.Q3_K;
    public static int BlockBytes => 110;
    public static bool HasOffset => true;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Scales(byte* w, short* bsums, short* scales, out int offset, out float min)
    {
        var packed = w + 96;
        var sum = 0;
        for (var s = 0; s < 16; s++)
        {
            var lo4 = s < 8 ? packed[s] & 0xF : packed[s - 8] >> 4;
            var hi2 = (packed[8 + s % 4] >> (2 * (s / 4))) & 3;
            var scale = (lo4 | (hi2 << 4)) - 32;
            scales[s] = (short)scale;
            sum += scale * bsums[s];
        }
        offset = 4 * sum;
        min = 0;
        return HalfLookup.ToSingle(w + 108);
    }
}

/// <summary>Q4_K and Q5_K: 6-bit scale and min per 32 elements (one scale per 16 written twice).</summary>
internal static unsafe class KQuantScalesMins
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Scales(byte* w, short* bsums, short* scales, out int offset, out float min)
    {
        // get_scale_min_k4: the first four 6-bit scales and mins sit in the low bits of bytes 0..7, the last four
        // are split between the nibbles of bytes 8..11 and the top two bits of bytes 0..7.
        var q = w + 4;
        var summ = 0;
        for (var j = 0; j < 8; j++)
        {
            int sc, m;
            if (j < 4)
            {
                sc = q[j] & 63;
                m = q[j + 4] & 63;
            }
            else
            {
                sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
                m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
            }
            scales[2 * j] = scales[2 * j + 1] = (short)sc;
            summ += m * (bsums[2 * j] + bsums[2 * j + 1]);
        }
        offset = 0;
        min = HalfLookup.ToSingle(w + 2) * summ;
        return HalfLookup.ToSingle(w);
    }
}

/// <summary>Q4_K: codes 0..15.</summary>
internal readonly unsafe struct Q4_KFormat : ISuperBlockFormat
{
    public static GgmlType Type => GgmlType.Q4_K;
    public static int BlockBytes => 144;
    public static bool HasOffset => false;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Scales(byte* w, short* bsums, short* scales, out int offset, out float min) => KQuantScalesMins.Scales(w, bsums, scales, out offset, out min);
}

/// <summary>Q5_K: codes 0..31.</summary>
internal readonly unsafe struct Q5_KFormat : ISuperBlockFormat
{
    public static GgmlType Type => GgmlType.Q5_K;
    public static int BlockBytes => 176;
    public static bool HasOffset => false;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Scales(byte* w, short* bsums, short* scales, out int offset, out float min) => KQuantScalesMins.Scales(w, bsums, scales, out offset, out min);
}

/// <summary>Q6_K: codes 0..63, value code − 32; int8 scales.</summary>
internal readonly unsafe struct Q6_KFormat : ISuperBlockFormat
{
    public static GgmlType Type => GgmlType.Q6_K;
    public static int BlockBytes => 210;
    public static bool HasOffset => true;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Scales(byte* w, short* bsums, short* scales, out int offset, out float min)
    {
        var packed = (sbyte*)(w + 192);
        var sum = 0;
        for (var s = 0; s < 16; s++)
        {
            scales[s] = packed[s];
            sum += packed[s] * bsums[s];
        }
        offset = 32 * sum;
        min = 0;
        return HalfLookup.ToSingle(w + 208);
    }
}

/// <summary>IQ4_XS: signed grid values, 6-bit scale − 32 per 32 elements, no offset.</summary>
internal readonly unsafe struct IQ4_XSFormat : ISuperBlockFormat
{
    public static GgmlType Type => GgmlType.IQ4_XS;
    public static int BlockBytes => 136;
    public static bool HasOffset => false;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Scales(byte* w, short* bsums, short* scales, out int offset, out float min)
    {
        var high = *(ushort*)(w + 2);
        for (var j = 0; j < 8; j++)
            scales[2 * j] = scales[2 * j + 1] = (short)((((w[4 + j / 2] >> (4 * (j % 2))) & 0xF) | (((high >> (2 * j)) & 3) << 4)) - 32);
        offset = 0;
        min = 0;
        return HalfLookup.ToSingle(w);
    }
}

/// <summary>The ternary formats: codes t ∈ {0, 1, 2}, value t − 1, one scale.</summary>
internal static unsafe class TernaryScales
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Scales(byte* dPointer, short* bsums, short* scales, out int offset, out float min)
    {
        var sum = 0;
        for (var s = 0; s < 16; s++)
        {
            scales[s] = 1;
            sum += bsums[s];
        }
        offset = sum;
        min = 0;
        return HalfLookup.ToSingle(dPointer);
    }
}

/// <summary>TQ1_0: five trits per byte as a base-3 fraction.</summary>
internal readonly unsafe struct TQ1_0Format : ISuperBlockFormat
{
    public static GgmlType Type => GgmlType.TQ1_0;
    public static int BlockBytes => 54;
    public static bool HasOffset => true;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Scales(byte* w, short* bsums, short* scales, out int offset, out float min) => TernaryScales.Scales(w + 52, bsums, scales, out offset, out min);
}

/// <summary>TQ2_0: 2-bit trits placed like Q2_K's codes.</summary>
internal readonly unsafe struct TQ2_0Format : ISuperBlockFormat
{
    public static GgmlType Type => GgmlType.TQ2_0;
    public static int BlockBytes => 66;
    public static bool HasOffset => true;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Scales(byte* w, short* bsums, short* scales, out int offset, out float min) => TernaryScales.Scales(w + 64, bsums, scales, out offset, out min);
}
