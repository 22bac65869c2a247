using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Lutra.Core.Quants;

namespace Lutra.Core.Kernels;

/// <summary>
/// How one 32-element weight format yields the integer dots of two consecutive blocks at AVX-512: codes are laid
/// out [lo₀ lo₁ hi₀ hi₁] (16 bytes each: the nibble unpack's natural order) and <see cref="PairDot"/> returns
/// Σ code·a in sixteen int32 lanes. A lone last block uses the AVX2 decoder (<see cref="IBlock32Avx2.Dot"/>).
/// </summary>
internal unsafe interface IBlock32Avx512 : IBlock32Avx2
{
    static abstract Vector512<int> PairDot(byte* block0, Vector512<sbyte> a);
}

/// <summary>
/// 32-element block weights · Q8_0/Q8_1 activations, AVX-512, two blocks per 512-bit step and four rows per pass
/// (the structure of <see cref="Q4_0MatVecAvx512"/>, generalized). The sidecar holds each block pair's
/// activations permuted to [lo₀ lo₁ hi₀ hi₁], the offset · Σa lane sums, and f32 scales and Q8_1 sums.
/// </summary>
internal sealed unsafe class Block32MatVecAvx512<TBlock>() : MatVecKernel(TBlock.Type, InstructionSet.Avx512, "AVX-512 maddubs, 2 blocks x 4 rows")
    where TBlock : struct, IBlock32Avx512
{
    private const int Block = 32;

    public override int ActivationBytes(int n) => AlignUp(StandardActivationBytes(n)) + Block32Sidecar.Bytes(n, 32, 32);

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public override void PrepareActivations(float* x, int n, byte* state)
    {
        Block32Sidecar.QuantizeStandard(ActivationType, x, n, state, InstructionSet.Avx512);
        var sidecar = Block32Sidecar.At(state, StandardActivationBytes(n), n, 32, 32);
        var blocks = n / Block;
        var offset = Vector512.Create((byte)TBlock.Offset);
        for (var p = 0; 2 * p < blocks; p++)
        {
            var q0 = Block32Sidecar.StandardQuants(ActivationType, state, 2 * p);
            var dst = sidecar.Quants + 64 * p;
            if (2 * p + 1 < blocks)
            {
                var q1 = Block32Sidecar.StandardQuants(ActivationType, state, 2 * p + 1);
                Vector128.Load(q0).Store(dst);
                Vector128.Load(q1).Store(dst + 16);
                Vector128.Load(q0 + 16).Store(dst + 32);
                Vector128.Load(q1 + 16).Store(dst + 48);
            }
            else
            {
                // A lone last block keeps element order in the lower half, as the AVX2 tail step reads it.
                Vector256.Load(q0).Store(dst);
                Vector256<sbyte>.Zero.Store(dst + 32);
            }
            if (TBlock.Offset != 0)
            {
                Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(offset, Vector512.Load(dst)), Vector512<short>.One)
                    .Store(sidecar.Offsets + 16 * p);
            }
        }
        Block32Sidecar.StoreScales(ActivationType, state, blocks, sidecar);
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public override void MatVec(byte* weights, long rowBytes, int rows, byte* state, int n, float* y)
    {
        var s = Block32Sidecar.At(state, StandardActivationBytes(n), n, 32, 32);
        var blocks = n / Block;
        var fullPairs = blocks / 2;
        var r = 0;
        // One row at a time: the weights stream sequentially (interleaved rows halved the read bandwidth).
        for (; r < rows; r++)
        {
            var w = weights + r * rowBytes;
            Vector512<float> acc = default;
            var min = 0f;
            for (var p = 0; p < fullPairs; p++)
            {
                var o = 2 * p * TBlock.BlockBytes;
                // A pair is under a cache line (36-48 bytes): one prefetch each covers the stream.
                Sse.Prefetch1(w + o + InterleavedSteps.PrefetchDistance);
                var off = TBlock.Offset != 0 ? Vector512.Load(s.Offsets + 16 * p) : default;
                acc = PairStep(w + o, Vector512.Load(s.Quants + 64 * p), off, s.Scales[2 * p], s.Scales[2 * p + 1], acc);
                if (TBlock.HasMin)
                    min += PairMin(w + o, s.Sums + 2 * p);
            }
            y[r] = Vector512.Sum(acc) + min + Tail(w, s, blocks);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> PairStep(byte* w, Vector512<sbyte> a, Vector512<int> offset, float d0, float d1, Vector512<float> acc)
    {
        var sumi = TBlock.PairDot(w, a);
        if (TBlock.Offset != 0)
            sumi -= offset;
        // Lanes 0-3 and 8-11 belong to block 0, lanes 4-7 and 12-15 to block 1.
        var scales = Vector128.Create(HalfLookup.ToSingle(w) * d0, HalfLookup.ToSingle(w + TBlock.BlockBytes) * d1, 0f, 0f);
        var lanes = Avx512F.PermuteVar16x32(scales.ToVector256Unsafe().ToVector512Unsafe(), Vector512.Create(0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1));
        return Avx512F.FusedMultiplyAdd(Vector512.ConvertToSingle(sumi), lanes, acc);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float PairMin(byte* w, float* sums) =>
        HalfLookup.ToSingle(w + 2) * sums[0] + HalfLookup.ToSingle(w + TBlock.BlockBytes + 2) * sums[1];

    // Inlined so the accumulators need not leave registers around a call.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Tail(byte* row, Block32Sidecar s, int blocks)
    {
        if ((blocks & 1) == 0)
            return 0;
        var b = blocks - 1;
        var w = row + b * TBlock.BlockBytes;
        var sumi = TBlock.Dot(w, Vector256.Load(s.Quants + 32 * b));
        if (TBlock.Offset != 0)
            sumi -= Vector256.Load(s.Offsets + 8 * b);
        var result = Vector256.Sum(sumi) * (HalfLookup.ToSingle(w) * s.Scales[b]);
        if (TBlock.HasMin)
            result += HalfLookup.ToSingle(w + 2) * s.Sums[b];
        return result;
    }
}

/// <summary>The AVX-512 block-pair decoders.</summary>
internal static unsafe class Block32Avx512
{
    // Unsigned codes (≤ 31) × int8 activations: vpmaddubsw pairs stay within ±2·31·127, no saturation.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<int> MulAdd(Vector512<byte> codes, Vector512<sbyte> a) =>
        Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(codes, a), Vector512<short>.One);

    // Signed weights: |w| (≤ 127) × a·sign(w). AVX-512 has no vpsignb, so the sign is applied with a compare and
    // a blend; pairs stay ≤ 2·127·127 = 32258, no saturation.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<int> MulAddSigned(Vector512<sbyte> w, Vector512<sbyte> a)
    {
        var signedA = Vector512.ConditionalSelect(Vector512.LessThan(w, Vector512<sbyte>.Zero), Vector512<sbyte>.Zero - a, a);
        return Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(Avx512BW.Abs(w), signedA), Vector512<short>.One);
    }

    /// <summary>The nibbles of two blocks' 16 code bytes (at <paramref name="qs0"/> and <paramref name="qs0"/> + stride) as [lo₀ lo₁ hi₀ hi₁].</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<byte> Nibbles(byte* qs0, int stride)
    {
        var bytes = VectorJoin.Join(Vector128.Load(qs0), Vector128.Load(qs0 + stride));
        var mask = Vector256.Create((byte)0x0F);
        return VectorJoin.Join(bytes & mask, Vector256.ShiftRightLogical(bytes.AsUInt16(), 4).AsByte() & mask);
    }

    /// <summary>Two blocks' fifth-bit words as 0x10 bytes in the [lo₀ lo₁ hi₀ hi₁] order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<byte> FifthBits(byte* qh0, int stride)
    {
        ulong h0 = *(uint*)qh0, h1 = *(uint*)(qh0 + stride);
        var bits = (h0 & 0xFFFF) | ((h1 & 0xFFFF) << 16) | ((h0 >> 16) << 32) | ((h1 >> 16) << 48);
        // Byte j of the result takes bit j of the 64-bit word: in 128-bit lane L, byte i reads word byte 2L + i/8.
        var spread = Avx512BW.Shuffle(Vector512.Create(bits).AsByte(), Vector512.Create(
            (byte)0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3,
            4, 4, 4, 4, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 6, 7, 7, 7, 7, 7, 7, 7, 7));
        var bit = Vector512.Create(0x8040201008040201ul).AsByte();
        return Vector512.Equals(spread & bit, bit) & Vector512.Create((byte)0x10);
    }
}

internal readonly unsafe struct Q4_1Avx512 : IBlock32Avx512
{
    public static GgmlType Type => GgmlType.Q4_1;
    public static int BlockBytes => 20;
    public static int Offset => 0;
    public static bool HasMin => true;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<int> PairDot(byte* block0, Vector512<sbyte> a) => Block32Avx512.MulAdd(Block32Avx512.Nibbles(block0 + 4, BlockBytes), a);

    public static Vector256<int> Dot(byte* block, Vector256<sbyte> a) => Q4_1Avx2.Dot(block, a);
}

internal readonly unsafe struct Q5_0Avx512 : IBlock32Avx512
{
    public static GgmlType Type => GgmlType.Q5_0;
    public static int BlockBytes => 22;
    public static int Offset => 16;
    public static bool HasMin => false;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<int> PairDot(byte* block0, Vector512<sbyte> a) =>
        Block32Avx512.MulAdd(Block32Avx512.Nibbles(block0 + 6, BlockBytes) | Block32Avx512.FifthBits(block0 + 2, BlockBytes), a);

    public static Vector256<int> Dot(byte* block, Vector256<sbyte> a) => Q5_0Avx2.Dot(block, a);
}

internal readonly unsafe struct Q5_1Avx512 : IBlock32Avx512
{
    public static GgmlType Type => GgmlType.Q5_1;
    public static int BlockBytes => 24;
    public static int Offset => 0;
    public static bool HasMin => true;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<int> PairDot(byte* block0, Vector512<sbyte> a) =>
        Block32Avx512.MulAdd(Block32Avx512.Nibbles(block0 + 8, BlockBytes) | Block32Avx512.FifthBits(block0 + 4, BlockBytes), a);

    public static Vector256<int> Dot(byte* block, Vector256<sbyte> a) => Q5_1Avx2.Dot(block, a);
}

internal readonly unsafe struct IQ4_NLAvx512 : IBlock32Avx512
{
    public static GgmlType Type => GgmlType.IQ4_NL;
    public static int BlockBytes => 18;
    public static int Offset => 0;
    public static bool HasMin => false;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<int> PairDot(byte* block0, Vector512<sbyte> a)
    {
        var grid = Vector512.Create(Block32Sidecar.NonLinearGrid);
        return Block32Avx512.MulAddSigned(Avx512BW.Shuffle(grid, Block32Avx512.Nibbles(block0 + 2, BlockBytes).AsSByte()), a);
    }

    public static Vector256<int> Dot(byte* block, Vector256<sbyte> a) => IQ4_NLAvx2.Dot(block, a);
}
