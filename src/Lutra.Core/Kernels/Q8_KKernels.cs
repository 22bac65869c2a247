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

    /// <summary>
    /// TQ2_0 · Q8_K. Ternary digits t ∈ {0,1,2} (value t − 1), placed like Q2_K's 2-bit codes. Per super-block the
    /// four 64-element products stay in int16 (|Σ| ≤ 4·2·3·127), and the −Σa of the digit offset comes in as the
    /// sixteen activation sums in the int32 lanes (<see cref="TernaryBlock"/>).
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public static float DotTQ2_0Avx512(byte* w, byte* a, int n)
    {
        const int bytes = 66;
        var mask = Vector256.Create((byte)3);
        var sum = 0f;
        for (var b = 0; b < n / SuperBlock; b++, w += bytes, a += Q8_KBytes)
        {
            var aq = (sbyte*)(a + Q8_KQs);
            var sums = Vector512<short>.Zero;
            for (var h = 0; h < 2; h++)
            {
                var q = Vector256.Load(w + 32 * h);
                var first = VectorJoin.Join(q & mask, Vector256.ShiftRightLogical(q.AsUInt16(), 2).AsByte() & mask);
                var second = VectorJoin.Join(Vector256.ShiftRightLogical(q.AsUInt16(), 4).AsByte() & mask,
                    Vector256.ShiftRightLogical(q.AsUInt16(), 6).AsByte() & mask);
                sums += Avx512BW.MultiplyAddAdjacent(first, Vector512.Load(aq + 128 * h));
                sums += Avx512BW.MultiplyAddAdjacent(second, Vector512.Load(aq + 128 * h + 64));
            }
            sum += TernaryBlock(sums, a, HalfLookup.ToSingle(w + 64));
        }
        return sum;
    }

    /// <summary>
    /// TQ1_0 · Q8_K. Five trits per byte as a base-3 fixed-point fraction (formats.md §2.5): trit k of a byte q is
    /// the top of (q·3^k mod 256)·3, i.e. (v ≥ 86) + (v ≥ 171) for v = q·3^k mod 256, computed on bytes. qs[0..32)
    /// give elements 32k + m, qs[32..48) elements 160 + 16k + m and qh[j] elements 240 + 4k + j, so the four
    /// 64-element steps [v0|v1], [v2|v3], [v4|p0 p1], [p2 p3|p4 qh] read the activations in element order. Sums
    /// as <see cref="DotTQ2_0Avx512"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public static float DotTQ1_0Avx512(byte* w, byte* a, int n)
    {
        const int bytes = 54;
        var sum = 0f;
        for (var b = 0; b < n / SuperBlock; b++, w += bytes, a += Q8_KBytes)
        {
            var aq = (sbyte*)(a + Q8_KQs);
            var v0 = Vector256.Load(w);
            var v1 = v0 + v0 + v0;
            var v2 = v1 + v1 + v1;
            var v3 = v2 + v2 + v2;
            var v4 = v3 + v3 + v3;
            var tail = TQ1_0Vector128.TailPowers(w);
            var sums = Avx512BW.MultiplyAddAdjacent(Trits(VectorJoin.Join(v0, v1)), Vector512.Load(aq))
                + Avx512BW.MultiplyAddAdjacent(Trits(VectorJoin.Join(v2, v3)), Vector512.Load(aq + 64))
                + (Avx512BW.MultiplyAddAdjacent(Trits(VectorJoin.Join(v4, Vector256.Create(tail.P0, tail.P1))), Vector512.Load(aq + 128))
                + Avx512BW.MultiplyAddAdjacent(Trits(VectorJoin.Join(Vector256.Create(tail.P2, tail.P3), Vector256.Create(tail.P4, tail.High))), Vector512.Load(aq + 192)));
            sum += TernaryBlock(sums, a, HalfLookup.ToSingle(w + 52));
        }
        return sum;
    }

    /// <summary>The trit (v ≥ 86) + (v ≥ 171) of every byte v = q·3^k mod 256.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<byte> Trits(Vector512<byte> v) =>
        Vector512<byte>.Zero - Vector512.GreaterThanOrEqual(v, Vector512.Create((byte)86)) - Vector512.GreaterThanOrEqual(v, Vector512.Create((byte)171));

    /// <summary>
    /// d·d_a·(Σ t·a − Σ a) of one ternary super-block, in the reference's order (the integer sum, then one multiply by
    /// the product of the two scales), so the row sums equal <see cref="QuantReference.Dot"/> bit for bit: the int16
    /// pair sums of t·a (all 256 elements) summed to int32 pairs, minus the sixteen 16-element activation sums, one per
    /// lane, then the lanes added (|·| &lt; 2¹⁷ each, exact).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float TernaryBlock(Vector512<short> sums, byte* a, float d)
    {
        var lanes = Avx512BW.MultiplyAddAdjacent(sums, Vector512<short>.One)
            - Avx512F.ConvertToVector512Int32(Vector256.Load((short*)(a + Q8_KBsums)));
        return d * *(float*)a * Vector512.Sum(lanes);
    }
}
