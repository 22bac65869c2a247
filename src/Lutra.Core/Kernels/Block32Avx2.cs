using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Lutra.Core.Quants;

namespace Lutra.Core.Kernels;

/// <summary>
/// How one 32-element weight format yields its integer block dot at AVX2. <see cref="Dot"/> returns Σ code·a in
/// eight int32 lanes, lane k covering elements 4k..4k+3 (the vpmaddubsw + vpmaddwd layout); the format's
/// constant offset and min are applied by <see cref="Block32MatVecAvx2{TBlock}"/> through activation sums.
/// </summary>
internal unsafe interface IBlock32Avx2 : IBlock32Format
{
    static abstract Vector256<int> Dot(byte* block, Vector256<sbyte> a);
}

/// <summary>
/// 32-element block weights (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL) · Q8_0/Q8_1 activations, AVX2 + FMA, one
/// block per 256-bit step and four rows per pass. The sidecar holds the activations contiguously (no 34/36-byte
/// stride), the offset · Σa lane sums, and the block scales and Q8_1 sums as f32, so a block costs the weight
/// decode, one vpmaddubsw, one vpmaddwd and one FMA per row.
/// </summary>
internal sealed unsafe class Block32MatVecAvx2<TBlock>() : MatVecKernel(TBlock.Type, InstructionSet.Avx2, "AVX2 maddubs, 4 rows")
    where TBlock : struct, IBlock32Avx2
{
    private const int Block = 32;

    public override int ActivationBytes(int n) => AlignUp(StandardActivationBytes(n)) + Block32Sidecar.Bytes(n, 32, 32);

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public override void PrepareActivations(float* x, int n, byte* state)
    {
        Block32Sidecar.QuantizeStandard(ActivationType, x, n, state, InstructionSet.Avx2);
        var sidecar = Block32Sidecar.At(state, StandardActivationBytes(n), n, 32, 32);
        var blocks = n / Block;
        var offset = Vector256.Create((byte)TBlock.Offset);
        for (var b = 0; b < blocks; b++)
        {
            var q = Vector256.Load(Block32Sidecar.StandardQuants(ActivationType, state, b));
            q.Store(sidecar.Quants + Block * b);
            if (TBlock.Offset != 0)
                Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(offset, q), Vector256<short>.One).Store(sidecar.Offsets + 8 * b);
        }
        Block32Sidecar.StoreScales(ActivationType, state, blocks, sidecar);
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public override void MatVec(byte* weights, long rowBytes, int rows, byte* state, int n, float* y)
    {
        var s = Block32Sidecar.At(state, StandardActivationBytes(n), n, 32, 32);
        var blocks = n / Block;
        var r = 0;
        // One row at a time: the weights stream sequentially (interleaved rows halved the read bandwidth).
        for (; r < rows; r++)
        {
            var w = weights + r * rowBytes;
            Vector256<float> acc = default;
            var min = 0f;
            for (var b = 0; b < blocks; b++, w += TBlock.BlockBytes)
            {
                // A block is under a cache line (18-34 bytes): one prefetch each covers the stream.
                Sse.Prefetch1(w + InterleavedSteps.PrefetchDistance);
                var off = TBlock.Offset != 0 ? Vector256.Load(s.Offsets + 8 * b) : default;
                acc = Step(w, Vector256.Load(s.Quants + Block * b), off, s.Scales[b], acc);
                if (TBlock.HasMin)
                    min += HalfLookup.ToSingle(w + 2) * s.Sums[b];
            }
            y[r] = Vector256.Sum(acc) + min;
        }
    }

    /// <summary>
    /// GEMM tile: four tokens × one row. The four steps of a block read the same weight bytes with no store in
    /// between, so the JIT decodes the block once (CSE) and only the MAD and scaling run per token.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public override void MatMat(byte* weights, long rowBytes, int rows, byte* states, int stateStride, int tokens, int n, float* y, long yStride)
    {
        var standard = StandardActivationBytes(n);
        var blocks = n / Block;
        var t = 0;
        for (; t + 4 <= tokens; t += 4)
        {
            var s0 = Block32Sidecar.At(states + (long)t * stateStride, standard, n, 32, 32);
            var s1 = Block32Sidecar.At(states + (long)(t + 1) * stateStride, standard, n, 32, 32);
            var s2 = Block32Sidecar.At(states + (long)(t + 2) * stateStride, standard, n, 32, 32);
            var s3 = Block32Sidecar.At(states + (long)(t + 3) * stateStride, standard, n, 32, 32);
            for (var r = 0; r < rows; r++)
            {
                var w = weights + r * rowBytes;
                Vector256<float> c0 = default, c1 = default, c2 = default, c3 = default;
                float m0 = 0, m1 = 0, m2 = 0, m3 = 0;
                for (var b = 0; b < blocks; b++, w += TBlock.BlockBytes)
                {
                    var q = Block * b;
                    c0 = Step(w, Vector256.Load(s0.Quants + q), TBlock.Offset != 0 ? Vector256.Load(s0.Offsets + 8 * b) : default, s0.Scales[b], c0);
                    c1 = Step(w, Vector256.Load(s1.Quants + q), TBlock.Offset != 0 ? Vector256.Load(s1.Offsets + 8 * b) : default, s1.Scales[b], c1);
                    c2 = Step(w, Vector256.Load(s2.Quants + q), TBlock.Offset != 0 ? Vector256.Load(s2.Offsets + 8 * b) : default, s2.Scales[b], c2);
                    c3 = Step(w, Vector256.Load(s3.Quants + q), TBlock.Offset != 0 ? Vector256.Load(s3.Offsets + 8 * b) : default, s3.Scales[b], c3);
                    if (TBlock.HasMin)
                    {
                        var min = HalfLookup.ToSingle(w + 2);
                        m0 += min * s0.Sums[b];
                        m1 += min * s1.Sums[b];
                        m2 += min * s2.Sums[b];
                        m3 += min * s3.Sums[b];
                    }
                }
                var yr = y + t * yStride + r;
                yr[0] = Vector256.Sum(c0) + m0;
                yr[yStride] = Vector256.Sum(c1) + m1;
                yr[2 * yStride] = Vector256.Sum(c2) + m2;
                yr[3 * yStride] = Vector256.Sum(c3) + m3;
            }
        }
        for (; t < tokens; t++)
            MatVec(weights, rowBytes, rows, states + (long)t * stateStride, n, y + t * yStride);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Step(byte* block, Vector256<sbyte> a, Vector256<int> offset, float activationScale, Vector256<float> acc)
    {
        var sumi = TBlock.Dot(block, a);
        if (TBlock.Offset != 0)
            sumi -= offset;
        return Fma.MultiplyAdd(Vector256.ConvertToSingle(sumi), Vector256.Create(HalfLookup.ToSingle(block) * activationScale), acc);
    }
}

/// <summary>The AVX2 block decoders: codes in element order, then one unsigned × signed MAD.</summary>
internal static unsafe class Block32Avx2
{
    // Unsigned codes (≤ 31) × int8 activations: vpmaddubsw pairs stay within ±2·31·127, no saturation.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> MulAdd(Vector256<byte> codes, Vector256<sbyte> a) =>
        Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(codes, a), Vector256<short>.One);

    // Signed weights: |w| (≤ 128) × a·sign(w) (|a| ≤ 127), pairs ≤ 2·128·127 = 32512, no saturation.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> MulAddSigned(Vector256<sbyte> w, Vector256<sbyte> a) =>
        Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(Avx2.Abs(w), Avx2.Sign(a, w)), Vector256<short>.One);

    /// <summary>16 bytes of nibbles → 32 codes in element order (low nibbles are elements 0..15).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<byte> Nibbles(byte* qs)
    {
        var bytes = Vector128.Load(qs);
        var mask = Vector128.Create((byte)0x0F);
        return Vector256.Create(bytes & mask, Vector128.ShiftRightLogical(bytes.AsUInt16(), 4).AsByte() & mask);
    }

    /// <summary>Bit i of the little-endian u32 at <paramref name="qh"/> as 0x10 in byte i (Q5's fifth bit).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<byte> FifthBits(byte* qh)
    {
        var bytes = Vector256.Create(*(uint*)qh).AsByte();
        var spread = Avx2.Shuffle(bytes, Vector256.Create((byte)0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
            2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3));
        var bit = Vector256.Create(0x8040201008040201ul).AsByte();
        return Vector256.Equals(spread & bit, bit) & Vector256.Create((byte)0x10);
    }
}

internal readonly unsafe struct Q4_0Avx2 : IBlock32Avx2
{
    public static GgmlType Type => GgmlType.Q4_0;
    public static int BlockBytes => 18;
    public static int Offset => 8;
    public static bool HasMin => false;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> Dot(byte* block, Vector256<sbyte> a) => Block32Avx2.MulAdd(Block32Avx2.Nibbles(block + 2), a);
}

internal readonly unsafe struct Q4_1Avx2 : IBlock32Avx2
{
    public static GgmlType Type => GgmlType.Q4_1;
    public static int BlockBytes => 20;
    public static int Offset => 0;
    public static bool HasMin => true;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> Dot(byte* block, Vector256<sbyte> a) => Block32Avx2.MulAdd(Block32Avx2.Nibbles(block + 4), a);
}

internal readonly unsafe struct Q5_0Avx2 : IBlock32Avx2
{
    public static GgmlType Type => GgmlType.Q5_0;
    public static int BlockBytes => 22;
    public static int Offset => 16;
    public static bool HasMin => false;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> Dot(byte* block, Vector256<sbyte> a) =>
        Block32Avx2.MulAdd(Block32Avx2.Nibbles(block + 6) | Block32Avx2.FifthBits(block + 2), a);
}

internal readonly unsafe struct Q5_1Avx2 : IBlock32Avx2
{
    public static GgmlType Type => GgmlType.Q5_1;
    public static int BlockBytes => 24;
    public static int Offset => 0;
    public static bool HasMin => true;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> Dot(byte* block, Vector256<sbyte> a) =>
        Block32Avx2.MulAdd(Block32Avx2.Nibbles(block + 8) | Block32Avx2.FifthBits(block + 4), a);
}

internal readonly unsafe struct Q8_0Avx2 : IBlock32Avx2
{
    public static GgmlType Type => GgmlType.Q8_0;
    public static int BlockBytes => 34;
    public static int Offset => 0;
    public static bool HasMin => false;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> Dot(byte* block, Vector256<sbyte> a) => Block32Avx2.MulAddSigned(Vector256.Load((sbyte*)(block + 2)), a);
}

internal readonly unsafe struct IQ4_NLAvx2 : IBlock32Avx2
{
    public static GgmlType Type => GgmlType.IQ4_NL;
    public static int BlockBytes => 18;
    public static int Offset => 0;
    public static bool HasMin => false;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> Dot(byte* block, Vector256<sbyte> a)
    {
        var grid = Vector256.Create(Block32Sidecar.NonLinearGrid);
        return Block32Avx2.MulAddSigned(Avx2.Shuffle(grid, Block32Avx2.Nibbles(block + 2).AsSByte()), a);
    }
}
