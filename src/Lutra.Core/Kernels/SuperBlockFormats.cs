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
        // Scale s: low nibble from byte s % 8 of the packed twelve (low nibbles for s < 8), top two bits from byte
        // 8 + s % 4 at 2·(s / 4); eight scales per 64-bit word with masks instead of per-scale branches.
        ulong a0 = *(uint*)(w + 96), a1 = *(uint*)(w + 100), a2 = *(uint*)(w + 104);
        const ulong nibbles = 0x0F0F0F0F0F0F0F0F, tops = 0x3030303030303030;
        var low = a0 | (a1 << 32);
        var first = (low & nibbles) | (((a2 << 4) | (a2 << 34)) & tops);
        var second = ((low >> 4) & nibbles) | ((a2 | (a2 << 30)) & tops);
        var sum = 0;
        for (var s = 0; s < 8; s++)
        {
            var lower = (int)((first >> (8 * s)) & 0xFF) - 32;
            var upper = (int)((second >> (8 * s)) & 0xFF) - 32;
            scales[s] = (short)lower;
            scales[s + 8] = (short)upper;
            sum += lower * bsums[s] + upper * bsums[s + 8];
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
        // get_scale_min_k4: scales and mins 0..3 are the low six bits of bytes 0..3 and 4..7; 4..7 take a nibble of
        // bytes 8..11 (low for scales, high for mins) and the top two bits of bytes 0..3 or 4..7, four at a time.
        uint u0 = *(uint*)(w + 4), u1 = *(uint*)(w + 8), u2 = *(uint*)(w + 12);
        const uint six = 0x3F3F3F3F, nibbles = 0x0F0F0F0F, tops = 0x30303030;
        var sc = (u0 & six) | ((ulong)((u2 & nibbles) | ((u0 >> 2) & tops)) << 32);
        var mn = (u1 & six) | ((ulong)(((u2 >> 4) & nibbles) | ((u1 >> 2) & tops)) << 32);
        var summ = 0;
        for (var j = 0; j < 8; j++)
        {
            scales[2 * j] = scales[2 * j + 1] = (short)((sc >> (8 * j)) & 0xFF);
            summ += (int)((mn >> (8 * j)) & 0xFF) * (bsums[2 * j] + bsums[2 * j + 1]);
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
