using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Lutra.Core.Quants;

namespace Lutra.Core.Kernels;

/// <summary>
/// AVX-512 kernels for weights whose activation format is Q8_K (256-element super-blocks: f32 d, 256 int8,
/// 16 int16 block sums): Q8_K quantization, and TQ1_0, TQ2_0 dot products (the K-quants are in SuperBlockAvx512.cs). Layouts are in
/// formats.md §2.5-2.6. Each super-block's integer sum is exact; the float combination follows the scalar
/// formula per super-block, so results differ from the reference only in float summation order.
/// </summary>
public static unsafe class Q8_KKernels
{
    public const int SuperBlock = 256;
    public const int Q8_KBytes = 292;   // f32 d, qs[256], bsums[16] int16
    private const int Q8_KQs = 4;
    private const int Q8_KBsums = 260;

    /// <summary>
    /// Q8_K activations exactly as the reference: the signed value of largest magnitude (first one) sets
    /// iscale = −127/max; q = min(127, round-half-even(iscale·x)); d = 1/iscale as f32; bsums per 16.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public static void QuantizeRowAvx512(float* x, byte* dst, int n)
    {
        for (var b = 0; b < n / SuperBlock; b++, x += SuperBlock, dst += Q8_KBytes)
        {
            var amaxV = Vector512<float>.Zero;
            for (var i = 0; i < SuperBlock; i += 16)
                amaxV = Vector512.Max(amaxV, Vector512.Abs(Vector512.Load(x + i)));
            var amax = HorizontalMax(amaxV);
            var q = (sbyte*)(dst + Q8_KQs);
            var bsums = (short*)(dst + Q8_KBsums);
            if (amax == 0)
            {
                new Span<byte>(dst, Q8_KBytes).Clear();
                continue;
            }
            // The sign comes from the first element whose magnitude equals the maximum.
            var max = 0f;
            var target = Vector512.Create(amax);
            for (var i = 0; i < SuperBlock; i += 16)
            {
                var hits = Vector512.Equals(Vector512.Abs(Vector512.Load(x + i)), target).ExtractMostSignificantBits();
                if (hits != 0)
                {
                    max = x[i + BitOperations.TrailingZeroCount(hits)];
                    break;
                }
            }
            var iscale = -127f / max;
            if (!float.IsFinite(iscale))
            {
                ReferenceBlock(x, dst);
                continue;
            }
            var vscale = Vector512.Create(iscale);
            var limit = Vector512.Create(127);
            for (var i = 0; i < SuperBlock; i += 16)
            {
                var v = Vector512.Min(Vector512.ConvertToInt32(Vector512.Round(Vector512.Load(x + i) * vscale)), limit);
                var s16 = Vector512.Narrow(v, v);
                var s8 = Vector512.Narrow(s16, s16);
                s8.GetLower().GetLower().Store(q + i);
                bsums[i / 16] = (short)Vector512.Sum(v);
            }
            *(float*)dst = 1 / iscale;
        }
    }

    /// <summary><see cref="QuantizeRowAvx512"/> with 128-bit vectors (AVX2/SSE/NEON machines): the same arithmetic.</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public static void QuantizeRowVector128(float* x, byte* dst, int n)
    {
        for (var b = 0; b < n / SuperBlock; b++, x += SuperBlock, dst += Q8_KBytes)
        {
            Vector128<float> m0 = default, m1 = default, m2 = default, m3 = default;
            for (var i = 0; i < SuperBlock; i += 16)
            {
                m0 = Vector128.Max(m0, Vector128.Abs(Vector128.Load(x + i)));
                m1 = Vector128.Max(m1, Vector128.Abs(Vector128.Load(x + i + 4)));
                m2 = Vector128.Max(m2, Vector128.Abs(Vector128.Load(x + i + 8)));
                m3 = Vector128.Max(m3, Vector128.Abs(Vector128.Load(x + i + 12)));
            }
            var m = Vector128.Max(Vector128.Max(m0, m1), Vector128.Max(m2, m3));
            var amax = MathF.Max(MathF.Max(m[0], m[1]), MathF.Max(m[2], m[3]));
            var q = (sbyte*)(dst + Q8_KQs);
            var bsums = (short*)(dst + Q8_KBsums);
            if (amax == 0)
            {
                new Span<byte>(dst, Q8_KBytes).Clear();
                continue;
            }
            // The sign comes from the first element whose magnitude equals the maximum.
            var max = 0f;
            var target = Vector128.Create(amax);
            for (var i = 0; i < SuperBlock; i += 4)
            {
                var hits = Vector128.Equals(Vector128.Abs(Vector128.Load(x + i)), target).ExtractMostSignificantBits();
                if (hits != 0)
                {
                    max = x[i + BitOperations.TrailingZeroCount(hits)];
                    break;
                }
            }
            var iscale = -127f / max;
            if (!float.IsFinite(iscale))
            {
                ReferenceBlock(x, dst);
                continue;
            }
            var vscale = Vector128.Create(iscale);
            var limit = Vector128.Create(127);
            for (var i = 0; i < SuperBlock; i += 16)
            {
                var v0 = Vector128.Min(Vector128.ConvertToInt32(Vector128.Round(Vector128.Load(x + i) * vscale)), limit);
                var v1 = Vector128.Min(Vector128.ConvertToInt32(Vector128.Round(Vector128.Load(x + i + 4) * vscale)), limit);
                var v2 = Vector128.Min(Vector128.ConvertToInt32(Vector128.Round(Vector128.Load(x + i + 8) * vscale)), limit);
                var v3 = Vector128.Min(Vector128.ConvertToInt32(Vector128.Round(Vector128.Load(x + i + 12) * vscale)), limit);
                Vector128.Narrow(Vector128.Narrow(v0, v1), Vector128.Narrow(v2, v3)).Store(q + i);
                bsums[i / 16] = (short)Vector128.Sum(v0 + v1 + (v2 + v3));
            }
            *(float*)dst = 1 / iscale;
        }
    }

    /// <summary>
    /// A block of subnormals, whose −127/max overflows: the reference's rounding trick on ±∞ products is what
    /// llama.cpp stores, and no vector conversion reproduces it.
    /// </summary>
    private static void ReferenceBlock(float* x, byte* dst) =>
        QuantReference.QuantizeActivations(GgmlType.Q8_K, new ReadOnlySpan<float>(x, SuperBlock), new Span<byte>(dst, Q8_KBytes));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float HorizontalMax(Vector512<float> v)
    {
        var m8 = Vector256.Max(v.GetLower(), v.GetUpper());
        var m4 = Vector128.Max(m8.GetLower(), m8.GetUpper());
        return MathF.Max(MathF.Max(m4[0], m4[1]), MathF.Max(m4[2], m4[3]));
    }


    // Unsigned weight codes × signed activations, pairs summed to int16 (vpmaddubsw), then pairs of int16 times
    // a per-lane int16 factor summed to int32 (vpmaddwd). Callers keep |pair| · factor · 2 inside int32.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> MulAdd(Vector512<byte> codes, sbyte* a, Vector512<short> factor) =>
        Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(codes, Vector512.Load(a)), factor);

    /// <summary>TQ2_0 · Q8_K. Ternary digits t ∈ {0,1,2} (value t − 1), placed like Q2_K's 2-bit codes.</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public static float DotTQ2_0Avx512(byte* w, byte* a, int n)
    {
        const int bytes = 66;
        var mask = Vector256.Create((byte)3);
        var ones = Vector512<short>.One;
        var sum = 0f;
        for (var b = 0; b < n / SuperBlock; b++, w += bytes, a += Q8_KBytes)
        {
            var d = HalfLookup.ToSingle(w + 64) * *(float*)a;
            var bsums = (short*)(a + Q8_KBsums);
            var sumA = 0;
            for (var j = 0; j < 16; j++)
                sumA += bsums[j];
            var acc = Vector512<int>.Zero;
            for (var h = 0; h < 2; h++)
            {
                var q = Vector256.Load(w + 32 * h);
                var first = VectorJoin.Join(q & mask, Vector256.ShiftRightLogical(q.AsUInt16(), 2).AsByte() & mask);
                var second = VectorJoin.Join(Vector256.ShiftRightLogical(q.AsUInt16(), 4).AsByte() & mask,
                    Vector256.ShiftRightLogical(q.AsUInt16(), 6).AsByte() & mask);
                acc += MulAdd(first, (sbyte*)(a + Q8_KQs + 128 * h), ones);
                acc += MulAdd(second, (sbyte*)(a + Q8_KQs + 128 * h + 64), ones);
            }
            sum += d * (Vector512.Sum(acc) - sumA);
        }
        return sum;
    }

    /// <summary>TQ1_0 · Q8_K. Five trits per byte as a base-3 fixed-point fraction (formats.md §2.5).</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public static float DotTQ1_0Avx512(byte* w, byte* a, int n)
    {
        const int bytes = 54;
        ReadOnlySpan<ushort> pow3 = [1, 3, 9, 27, 81];
        var byteMask = Vector512.Create((ushort)0xFF);
        var sum = 0f;
        for (var b = 0; b < n / SuperBlock; b++, w += bytes, a += Q8_KBytes)
        {
            var d = HalfLookup.ToSingle(w + 52) * *(float*)a;
            var bsums = (short*)(a + Q8_KBsums);
            var sumA = 0;
            for (var j = 0; j < 16; j++)
                sumA += bsums[j];
            var aq = (sbyte*)(a + Q8_KQs);
            var acc = Vector512<int>.Zero;
            // qs[0..32): trit k of byte m is element 32k + m.
            var q32 = Avx512BW.ConvertToVector512UInt16(Vector256.Load(w));
            for (var k = 0; k < 5; k++)
                acc += Avx512BW.MultiplyAddAdjacent(Trits(q32, pow3[k], byteMask), SignExtend32(aq + 32 * k));
            // qs[32..48): trit k of byte 32 + m is element 160 + 16k + m.
            var q16 = Avx2.ConvertToVector256Int16(Vector128.Load(w + 32)).AsUInt16();
            var acc16 = Vector256<int>.Zero;
            for (var k = 0; k < 5; k++)
            {
                var t = ((((q16 * pow3[k]) & Vector256.Create((ushort)0xFF)) * 3) >> 8).AsInt16();
                acc16 += Avx2.MultiplyAddAdjacent(t, Avx2.ConvertToVector256Int16(Vector128.Load(aq + 160 + 16 * k)));
            }
            // qh[0..4): trit k of byte j is element 240 + 4k + j (four trits per byte).
            var tail = 0;
            for (var j = 0; j < 4; j++)
            {
                for (var k = 0; k < 4; k++)
                {
                    var p = (byte)(w[48 + j] * pow3[k]);
                    tail += ((p * 3) >> 8) * aq[240 + 4 * k + j];
                }
            }
            sum += d * (Vector512.Sum(acc) + Vector256.Sum(acc16) + tail - sumA);
        }
        return sum;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<short> Trits(Vector512<ushort> bytes, ushort pow, Vector512<ushort> byteMask) =>
        ((((bytes * pow) & byteMask) * 3) >> 8).AsInt16();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<short> SignExtend32(sbyte* p) => Avx512BW.ConvertToVector512Int16(Vector256.Load(p));
}
