using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Lutra.Core.Quants;

namespace Lutra.Core.Kernels;

/// <summary>
/// How one Q8_K-paired weight format yields its super-block integer dot at AVX2: Σ scale·code·a over 256
/// elements in eight int32 lanes, eight 32-element chunks each decoded to codes in element order.
/// </summary>
internal unsafe interface ISuperBlockAvx2 : ISuperBlockFormat
{
    static abstract Vector256<int> Dot(byte* w, sbyte* a, short* scales);
}

/// <summary>
/// Ternary weights · Q8_K activations, AVX2 + FMA (the K-quants and IQ4_XS use <see cref="SuperBlockStepMatVecAvx2{TBlock}"/>). The sidecar holds the int8 activations
/// without the 292-byte stride. Per super-block: scalar scale unpack, eight (decode, vpmaddubsw, vpmaddwd by the
/// scales) chunks, one FMA; mins and code offsets are folded out through the activation block sums.
/// </summary>
internal sealed unsafe class SuperBlockMatVecAvx2<TBlock>() : MatVecKernel(TBlock.Type, InstructionSet.Avx2, "AVX2 maddubs, super-block")
    where TBlock : struct, ISuperBlockAvx2
{
    public override int ActivationBytes(int n) => AlignUp(StandardActivationBytes(n)) + AlignUp(n);

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public override void PrepareActivations(float* x, int n, byte* state)
    {
        SuperBlockSidecar.QuantizeStandard(x, n, state, InstructionSet.Avx2);
        var quants = (sbyte*)(state + AlignUp(StandardActivationBytes(n)));
        for (var sb = 0; sb < n / SuperBlockSidecar.Size; sb++)
        {
            for (var i = 0; i < SuperBlockSidecar.Size; i += 32)
                Vector256.Load(SuperBlockSidecar.StandardQuants(state, sb) + i).Store(quants + SuperBlockSidecar.Size * sb + i);
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public override void MatVec(byte* weights, long rowBytes, int rows, byte* state, int n, float* y)
    {
        var quants = (sbyte*)(state + AlignUp(StandardActivationBytes(n)));
        var superBlocks = n / SuperBlockSidecar.Size;
        var scales = stackalloc short[16];
        for (var r = 0; r < rows; r++)
        {
            var w = weights + r * rowBytes;
            var acc = Vector256<float>.Zero;
            var mins = 0f;
            var exact = 0f;
            for (var sb = 0; sb < superBlocks; sb++, w += TBlock.BlockBytes)
            {
                InterleavedSteps.PrefetchStream(w, TBlock.BlockBytes);
                var da = SuperBlockSidecar.Scale(state, sb);
                var d = TBlock.Scales(w, SuperBlockSidecar.Sums(state, sb), scales, out var offset, out var min);
                var sumi = TBlock.Dot(w, quants + SuperBlockSidecar.Size * sb, scales);

                if (TBlock.HasOffset)

                    exact += d * da * (Vector256.Sum(sumi) - offset);

                else

                    acc = Fma.MultiplyAdd(Vector256.ConvertToSingle(sumi), Vector256.Create(d * da), acc);
                mins += da * min;
            }
            y[r] = Vector256.Sum(acc) + exact - mins;
        }
    }
}

/// <summary>The AVX2 super-block chunk decoders and MADs.</summary>
internal static unsafe class SuperBlockAvx2
{
    private static Vector256<short> Scales(short* s) => Avx2.InsertVector128(Vector128.Create(s[0]).ToVector256Unsafe(), Vector128.Create(s[1]), 1);

    // Unsigned codes ≤ 63 × int8 activations: vpmaddubsw pairs ≤ 2·63·127 = 16002; times a scale |s| ≤ 128 in
    // vpmaddwd, each int32 lane ≤ 2·16002·128 per chunk, and eight chunks stay far inside int32.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> MulAdd(Vector256<byte> codes, sbyte* a, short* scales) =>
        Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(codes, Vector256.Load(a)), Scales(scales));

    /// <summary>Bits [shift, shift + 2) of each byte.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<byte> Bits2(Vector256<byte> q, int shift) => Vector256.ShiftRightLogical(q.AsUInt16(), shift).AsByte() & Vector256.Create((byte)3);

    /// <summary>The trit (3·v) » 8 of each byte v: 1 from v ≥ 86, 2 from v ≥ 171.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<byte> Trits(Vector256<byte> v) =>
        Vector256<byte>.Zero - Vector256.GreaterThanOrEqual(v, Vector256.Create((byte)86)) - Vector256.GreaterThanOrEqual(v, Vector256.Create((byte)171));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<byte> Times3(Vector256<byte> v) => v + v + v;
}

internal readonly unsafe struct TQ2_0Avx2 : ISuperBlockAvx2
{
    public static GgmlType Type => GgmlType.TQ2_0;
    public static int BlockBytes => TQ2_0Format.BlockBytes;
    public static bool HasOffset => TQ2_0Format.HasOffset;
    public static float Scales(byte* w, short* bsums, short* scales, out int offset, out float min) => TQ2_0Format.Scales(w, bsums, scales, out offset, out min);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> Dot(byte* w, sbyte* a, short* scales)
    {
        var acc = Vector256<int>.Zero;
        for (var h = 0; h < 2; h++)
        {
            var q = Vector256.Load(w + 32 * h);
            for (var k = 0; k < 4; k++)
                acc += SuperBlockAvx2.MulAdd(SuperBlockAvx2.Bits2(q, 2 * k), a + 128 * h + 32 * k, scales + 8 * h + 2 * k);
        }
        return acc;
    }
}

internal readonly unsafe struct TQ1_0Avx2 : ISuperBlockAvx2
{
    public static GgmlType Type => GgmlType.TQ1_0;
    public static int BlockBytes => TQ1_0Format.BlockBytes;
    public static bool HasOffset => TQ1_0Format.HasOffset;
    public static float Scales(byte* w, short* bsums, short* scales, out int offset, out float min) => TQ1_0Format.Scales(w, bsums, scales, out offset, out min);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> Dot(byte* w, sbyte* a, short* scales)
    {
        // Trit k of a byte q is the top of (q·3^k mod 256)·3: qs[0..32) give elements 32k + m, qs[32..48)
        // elements 160 + 16k + m, and trit k of qh[j] is element 240 + 4k + j.
        var acc = Vector256<int>.Zero;
        var v = Vector256.Load(w);
        for (var k = 0; k < 5; k++, v = SuperBlockAvx2.Times3(v))
            acc += SuperBlockAvx2.MulAdd(SuperBlockAvx2.Trits(v), a + 32 * k, scales + 2 * k);
        var tail = TQ1_0Vector128.TailPowers(w);
        acc += SuperBlockAvx2.MulAdd(SuperBlockAvx2.Trits(Vector256.Create(tail.P0, tail.P1)), a + 160, scales + 10);
        acc += SuperBlockAvx2.MulAdd(SuperBlockAvx2.Trits(Vector256.Create(tail.P2, tail.P3)), a + 192, scales + 12);
        acc += SuperBlockAvx2.MulAdd(SuperBlockAvx2.Trits(Vector256.Create(tail.P4, tail.High)), a + 224, scales + 14);
        return acc;
    }
}

/// <summary>
/// One Q8_K-paired weight format at AVX2: where each activation goes in the sidecar record (the order the code
/// unpack produces), and one super-block's contribution added to a float accumulator.
/// </summary>
internal unsafe interface ISuperBlockStepAvx2
{
    static abstract GgmlType Type { get; }
    static abstract int BlockBytes { get; }

    /// <summary>The super-block element whose activation sits at record position <paramref name="position"/>.</summary>
    static abstract int Source(int position);

    /// <summary>The constant subtracted from every unsigned code (Q3_K 4, Q6_K 32), else 0.</summary>
    static abstract int CodeOffset { get; }

    /// <summary>acc + this super-block's dot, over eight float lanes (summed once per row).</summary>
    static abstract Vector256<float> Accumulate(byte* w, byte* record, Vector256<float> acc);
}

/// <summary>
/// K-quant and IQ4_XS weights · Q8_K activations, AVX2 + FMA: the structure of <see cref="SuperBlockMatVecAvx512{TBlock}"/>
/// at 32 elements per step. Scales are unpacked with a few 32-bit operations and spread into lanes with one
/// vpshufb per step; mins and code offsets come in through the record's precomputed activation sums.
/// </summary>
internal sealed unsafe class SuperBlockStepMatVecAvx2<TBlock>() : MatVecKernel(TBlock.Type, InstructionSet.Avx2, "AVX2 maddubs, super-block")
    where TBlock : struct, ISuperBlockStepAvx2
{
    private static readonly byte[] Order = SuperBlockRecord.BuildOrder(TBlock.Source);
    private static readonly int Stride = SuperBlockRecord.Stride(TBlock.CodeOffset != 0);

    public override int ActivationBytes(int n) => AlignUp(StandardActivationBytes(n)) + n / SuperBlockSidecar.Size * Stride;

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public override void PrepareActivations(float* x, int n, byte* state)
    {
        SuperBlockSidecar.QuantizeStandard(x, n, state, InstructionSet.Avx2);
        SuperBlockRecord.Prepare(state, n, state + AlignUp(StandardActivationBytes(n)), Order, false, TBlock.CodeOffset);
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public override void MatVec(byte* weights, long rowBytes, int rows, byte* state, int n, float* y)
    {
        var records = state + AlignUp(StandardActivationBytes(n));
        var superBlocks = n / SuperBlockSidecar.Size;
        var stride = Stride;
        for (var r = 0; r < rows; r++)
        {
            var w = weights + r * rowBytes;
            var record = records;
            var acc = Vector256<float>.Zero;
            for (var sb = 0; sb < superBlocks; sb++, w += TBlock.BlockBytes, record += stride)
            {
                InterleavedSteps.PrefetchStream(w, TBlock.BlockBytes);
                acc = TBlock.Accumulate(w, record, acc);
            }
            y[r] = Vector256.Sum(acc);
        }
    }
}

/// <summary>The AVX2 building blocks of <see cref="SuperBlockStepMatVecAvx2{TBlock}"/>.</summary>
internal static unsafe class SuperBlockStepAvx2
{
    // Unsigned codes ≤ 63 × int8 activations: vpmaddubsw pairs ≤ 2·63·127, no saturation; times |s| ≤ 128.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> MulAdd(Vector256<byte> codes, byte* a, Vector256<short> scales) =>
        Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(codes, Vector256.Load((sbyte*)a)), scales);

    /// <summary><see cref="MulAdd"/> for codes with a constant offset: the record's offset pair sums come off the int16 pairs.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> MulAddOffset(Vector256<byte> codes, byte* a, Vector256<short> scales) =>
        Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(codes, Vector256.Load((sbyte*)a)) - Vector256.Load((short*)(a + SuperBlockRecord.OffsetPairs)), scales);

    /// <summary>
    /// Word <paramref name="lower"/> of the table's lower 128 bits in lanes 0..7, word <paramref name="upper"/> of its
    /// upper 128 bits in lanes 8..15 (vpshufb indexes within each 128-bit half).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<short> Spread(Vector256<short> table, int lower, int upper)
    {
        byte l0 = (byte)(2 * lower), l1 = (byte)(2 * lower + 1), u0 = (byte)(2 * upper), u1 = (byte)(2 * upper + 1);
        return Avx2.Shuffle(table.AsByte(), Vector256.Create(l0, l1, l0, l1, l0, l1, l0, l1, l0, l1, l0, l1, l0, l1, l0, l1,
            u0, u1, u0, u1, u0, u1, u0, u1, u0, u1, u0, u1, u0, u1, u0, u1)).AsInt16();
    }

    /// <summary>The lower 128 bits in both halves.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<short> LowerTwice(Vector256<short> v) => Avx2.Permute4x64(v.AsInt64(), 0x44).AsInt16();

    /// <summary>The upper 128 bits in both halves.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<short> UpperTwice(Vector256<short> v) => Avx2.Permute4x64(v.AsInt64(), 0xEE).AsInt16();

    /// <summary>Bits of each byte moved left (positive) or right by whole-word shifts; the caller masks to bits that stay within their byte.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<byte> Move(Vector256<byte> v, int left) => left >= 0
        ? Vector256.ShiftLeft(v.AsUInt16(), left).AsByte()
        : Vector256.ShiftRightLogical(v.AsUInt16(), -left).AsByte();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<byte> ShiftRight(Vector256<byte> q, int bits) => Vector256.ShiftRightLogical(q.AsUInt16(), bits).AsByte();

    /// <summary>The per-super-block float step acc + d_a·(d·sum − m·mins), factors broadcast from memory (see SuperBlockAvx512.Combine).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Combine(Vector256<float> acc, Vector256<int> sum, byte* d, Vector256<int> mins, byte* m, byte* record) =>
        Fma.MultiplyAdd(
            Fma.MultiplyAddNegated(Vector256.ConvertToSingle(mins), Vector256.Create(HalfLookup.ToSingle(m)),
                Vector256.ConvertToSingle(sum) * Vector256.Create(HalfLookup.ToSingle(d))),
            Vector256.Create(*(float*)(record + SuperBlockRecord.Scale)), acc);

    /// <summary>The per-super-block float step acc + d_a·d·sum.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Finish(Vector256<float> acc, Vector256<int> sum, byte* d, byte* record) =>
        Fma.MultiplyAdd(Vector256.ConvertToSingle(sum) * Vector256.Create(HalfLookup.ToSingle(d)),
            Vector256.Create(*(float*)(record + SuperBlockRecord.Scale)), acc);

    /// <summary>Sixteen 16-element scales [s0..s15] applied to step j (sub-blocks 2j, 2j + 1) of an element-order format.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> Sixteen(Vector256<byte> c0, Vector256<byte> c1, Vector256<byte> c2, Vector256<byte> c3, byte* a, Vector256<short> table, int firstStep, bool offset)
    {
        var t = firstStep < 4 ? LowerTwice(table) : UpperTwice(table);
        var j = 2 * (firstStep % 4);
        return Step(c0, a, Spread(t, j, j + 1), offset) + Step(c1, a + 32, Spread(t, j + 2, j + 3), offset)
            + (Step(c2, a + 64, Spread(t, j + 4, j + 5), offset) + Step(c3, a + 96, Spread(t, j + 6, j + 7), offset));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Step(Vector256<byte> codes, byte* a, Vector256<short> scales, bool offset) =>
        offset ? MulAddOffset(codes, a, scales) : MulAdd(codes, a, scales);
}

/// <summary>Q2_K at AVX2: element order; step 4h + k is bits 2k of qs[32h..32h + 31].</summary>
internal readonly unsafe struct Q2_KStepAvx2 : ISuperBlockStepAvx2
{
    public static GgmlType Type => GgmlType.Q2_K;
    public static int BlockBytes => 84;
    public static int CodeOffset => 0;
    public static int Source(int position) => position;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Accumulate(byte* w, byte* record, Vector256<float> acc)
    {
        var packed = Avx2.ConvertToVector256Int16(Vector128.Load(w));
        var scales = packed & Vector256.Create((short)0x0F);
        var three = Vector256.Create((byte)3);
        var q0 = Vector256.Load(w + 16);
        var q1 = Vector256.Load(w + 48);
        var sum = SuperBlockStepAvx2.Sixteen(q0 & three, SuperBlockStepAvx2.ShiftRight(q0, 2) & three, SuperBlockStepAvx2.ShiftRight(q0, 4) & three,
                SuperBlockStepAvx2.ShiftRight(q0, 6) & three, record, scales, 0, false)
            + SuperBlockStepAvx2.Sixteen(q1 & three, SuperBlockStepAvx2.ShiftRight(q1, 2) & three, SuperBlockStepAvx2.ShiftRight(q1, 4) & three,
                SuperBlockStepAvx2.ShiftRight(q1, 6) & three, record + 128, scales, 4, false);
        var minSums = Avx2.MultiplyAddAdjacent(Vector256.ShiftRightLogical(packed, 4), Vector256.Load((short*)(record + SuperBlockRecord.Sums16)));
        return SuperBlockStepAvx2.Combine(acc, sum, w + 80, minSums, w + 82, record);
    }
}

/// <summary>Q3_K at AVX2: Q2_K's order, plus high-mask bit 4h + k of step 4h + k at bit 2; value code − 4.</summary>
internal readonly unsafe struct Q3_KStepAvx2 : ISuperBlockStepAvx2
{
    public static GgmlType Type => GgmlType.Q3_K;
    public static int BlockBytes => 110;
    public static int CodeOffset => 4;
    public static int Source(int position) => position;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Accumulate(byte* w, byte* record, Vector256<float> acc)
    {
        var scales = Q3_KScales.Unpack(w);
        var hmask = Vector256.Load(w);
        var q0 = Vector256.Load(w + 32);
        var q1 = Vector256.Load(w + 64);
        var sum = SuperBlockStepAvx2.Sixteen(Codes(q0, 0, hmask, 0), Codes(q0, 2, hmask, 1), Codes(q0, 4, hmask, 2), Codes(q0, 6, hmask, 3), record, scales, 0, true)
            + SuperBlockStepAvx2.Sixteen(Codes(q1, 0, hmask, 4), Codes(q1, 2, hmask, 5), Codes(q1, 4, hmask, 6), Codes(q1, 6, hmask, 7), record + 128, scales, 4, true);
        return SuperBlockStepAvx2.Finish(acc, sum, w + 108, record);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> Codes(Vector256<byte> q, int shift, Vector256<byte> hmask, int bit) =>
        (SuperBlockStepAvx2.ShiftRight(q, shift) & Vector256.Create((byte)3)) | (SuperBlockStepAvx2.Move(hmask, 2 - bit) & Vector256.Create((byte)4));
}

/// <summary>Q4_K at AVX2: element order; chunk c's low nibbles are sub-block 2c, its high nibbles 2c + 1.</summary>
internal readonly unsafe struct Q4_KStepAvx2 : ISuperBlockStepAvx2
{
    public static GgmlType Type => GgmlType.Q4_K;
    public static int BlockBytes => 144;
    public static int CodeOffset => 0;
    public static int Source(int position) => position;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Accumulate(byte* w, byte* record, Vector256<float> acc)
    {
        var table = KQuantScales.Unpack(w);
        var scales = SuperBlockStepAvx2.LowerTwice(table);
        var sum = Chunk(w, record, scales, 0) + Chunk(w, record, scales, 1) + (Chunk(w, record, scales, 2) + Chunk(w, record, scales, 3));
        var minSums = Avx2.MultiplyAddAdjacent(table, Vector256.Load((short*)(record + SuperBlockRecord.Sums32)));
        return SuperBlockStepAvx2.Combine(acc, sum, w, minSums, w + 2, record);
    }

    // Called with constant c, so the lane spreads fold to constants (a loop would build them at run time).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Chunk(byte* w, byte* record, Vector256<short> scales, int c)
    {
        var nibble = Vector256.Create((byte)0x0F);
        var q = Vector256.Load(w + 16 + 32 * c);
        return SuperBlockStepAvx2.MulAdd(q & nibble, record + 64 * c, SuperBlockStepAvx2.Spread(scales, 2 * c, 2 * c))
            + SuperBlockStepAvx2.MulAdd(SuperBlockStepAvx2.ShiftRight(q, 4) & nibble, record + 64 * c + 32, SuperBlockStepAvx2.Spread(scales, 2 * c + 1, 2 * c + 1));
    }
}

/// <summary>Q5_K at AVX2: Q4_K plus qh bit 2c (low nibbles of chunk c) or 2c + 1 (high) at bit 4.</summary>
internal readonly unsafe struct Q5_KStepAvx2 : ISuperBlockStepAvx2
{
    public static GgmlType Type => GgmlType.Q5_K;
    public static int BlockBytes => 176;
    public static int CodeOffset => 0;
    public static int Source(int position) => position;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Accumulate(byte* w, byte* record, Vector256<float> acc)
    {
        var table = KQuantScales.Unpack(w);
        var scales = SuperBlockStepAvx2.LowerTwice(table);
        var qh = Vector256.Load(w + 16);
        var sum = Chunk(w, qh, record, scales, 0) + Chunk(w, qh, record, scales, 1) + (Chunk(w, qh, record, scales, 2) + Chunk(w, qh, record, scales, 3));
        var minSums = Avx2.MultiplyAddAdjacent(table, Vector256.Load((short*)(record + SuperBlockRecord.Sums32)));
        return SuperBlockStepAvx2.Combine(acc, sum, w, minSums, w + 2, record);
    }

    // Called with constant c (see Q4_KStepAvx2.Chunk).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Chunk(byte* w, Vector256<byte> qh, byte* record, Vector256<short> scales, int c)
    {
        var nibble = Vector256.Create((byte)0x0F);
        var fifth = Vector256.Create((byte)0x10);
        var q = Vector256.Load(w + 48 + 32 * c);
        var low = (q & nibble) | (SuperBlockStepAvx2.Move(qh, 4 - 2 * c) & fifth);
        var high = (SuperBlockStepAvx2.ShiftRight(q, 4) & nibble) | (SuperBlockStepAvx2.Move(qh, 3 - 2 * c) & fifth);
        return SuperBlockStepAvx2.MulAdd(low, record + 64 * c, SuperBlockStepAvx2.Spread(scales, 2 * c, 2 * c))
            + SuperBlockStepAvx2.MulAdd(high, record + 64 * c + 32, SuperBlockStepAvx2.Spread(scales, 2 * c + 1, 2 * c + 1));
    }
}

/// <summary>Q6_K at AVX2: element order; value code − 32.</summary>
internal readonly unsafe struct Q6_KStepAvx2 : ISuperBlockStepAvx2
{
    public static GgmlType Type => GgmlType.Q6_K;
    public static int BlockBytes => 210;
    public static int CodeOffset => 32;
    public static int Source(int position) => position;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Accumulate(byte* w, byte* record, Vector256<float> acc)
    {
        var scales = Avx2.ConvertToVector256Int16((sbyte*)(w + 192));
        var sum = Half(w, w + 128, record, scales, 0) + Half(w + 64, w + 160, record + 128, scales, 4);
        return SuperBlockStepAvx2.Finish(acc, sum, w + 208, record);
    }

    // 128 elements: quarter k is the low (k < 2) or high nibbles of ql[32·(k % 2)..] with qh bits 2k, 2k + 1 at 4, 5.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Half(byte* ql, byte* qhBytes, byte* a, Vector256<short> scales, int firstStep)
    {
        var nibble = Vector256.Create((byte)0x0F);
        var high = Vector256.Create((byte)0x30);
        var l0 = Vector256.Load(ql);
        var l1 = Vector256.Load(ql + 32);
        var qh = Vector256.Load(qhBytes);
        return SuperBlockStepAvx2.Sixteen(
            (l0 & nibble) | (SuperBlockStepAvx2.Move(qh, 4) & high),
            (l1 & nibble) | (SuperBlockStepAvx2.Move(qh, 2) & high),
            (SuperBlockStepAvx2.ShiftRight(l0, 4) & nibble) | (qh & high),
            (SuperBlockStepAvx2.ShiftRight(l1, 4) & nibble) | (SuperBlockStepAvx2.Move(qh, -2) & high),
            a, scales, firstStep, true);
    }
}

/// <summary>
/// IQ4_XS at AVX2: grid values through vpshufb, |w|·(a·sign w) with vpsignb. Per 64 elements (sub-blocks j, j + 1)
/// the record holds the activations of the low nibbles (elements 0..15 of each), then of the high nibbles.
/// </summary>
internal readonly unsafe struct IQ4_XSStepAvx2 : ISuperBlockStepAvx2
{
    public static GgmlType Type => GgmlType.IQ4_XS;
    public static int BlockBytes => 136;
    public static int CodeOffset => 0;
    public static int Source(int position) => position / 64 * 64 + 32 * (position % 32 / 16) + 16 * (position % 64 / 32) + position % 16;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Accumulate(byte* w, byte* record, Vector256<float> acc)
    {
        var scales = IQ4_XSScales.Unpack(w);
        var table = Avx2.InsertVector128(scales.ToVector256Unsafe(), scales, 1);
        var sum = Pair(w, record, table, 0) + Pair(w, record, table, 2) + (Pair(w, record, table, 4) + Pair(w, record, table, 6));
        return SuperBlockStepAvx2.Finish(acc, sum, w, record);
    }

    // Sub-blocks j and j + 1, called with constant j (see Q4_KStepAvx2.Chunk).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Pair(byte* w, byte* record, Vector256<short> table, int j)
    {
        var grid = Vector256.Create(Block32Sidecar.NonLinearGrid);
        var nibble = Vector256.Create((byte)0x0F);
        var q = Vector256.Load(w + 8 + 16 * j);
        var factors = SuperBlockStepAvx2.Spread(table, j, j + 1);
        return Signed(Avx2.Shuffle(grid, (q & nibble).AsSByte()), record + 32 * j, factors)
            + Signed(Avx2.Shuffle(grid, (SuperBlockStepAvx2.ShiftRight(q, 4) & nibble).AsSByte()), record + 32 * j + 32, factors);
    }

    // |w| ≤ 127: pairs ≤ 2·127·127, no saturation.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Signed(Vector256<sbyte> values, byte* a, Vector256<short> scales) =>
        Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(Avx2.Abs(values), Avx2.Sign(Vector256.Load((sbyte*)a), values)), scales);
}

/// <summary>Q3_K's twelve bytes of signed 6-bit scales as 16 int16 lanes.</summary>
internal static unsafe class Q3_KScales
{
    /// <summary>From the block start (packed bytes 96..107). Scalar on purpose: the integer units are idle while the vector units are not.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<short> Unpack(byte* block)
    {
        // Scale s: low nibble from byte s % 8 (low nibbles for s < 8), top two bits from byte 8 + s % 4 at 2·(s / 4).
        uint a0 = *(uint*)(block + 96), a1 = *(uint*)(block + 100), a2 = *(uint*)(block + 104);
        const uint nibbles = 0x0F0F0F0F, tops = 0x30303030;
        var s0 = (a0 & nibbles) | ((a2 << 4) & tops);
        var s1 = (a1 & nibbles) | ((a2 << 2) & tops);
        var s2 = ((a0 >> 4) & nibbles) | (a2 & tops);
        var s3 = ((a1 >> 4) & nibbles) | ((a2 >> 2) & tops);
        return Avx2.ConvertToVector256Int16(Vector128.Create(s0 | ((ulong)s1 << 32), s2 | ((ulong)s3 << 32)).AsSByte() - Vector128.Create((sbyte)32));
    }
}

/// <summary>IQ4_XS's eight signed 6-bit scales as int16 lanes.</summary>
internal static unsafe class IQ4_XSScales
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<short> Unpack(byte* w)
    {
        // Scale j: nibble j of bytes 4..7 | bits 2j, 2j + 1 of the u16 at 2, « 4. Spread by halving shifts (no
        // pdep: it is microcoded on older AMD cores).
        ulong low = *(uint*)(w + 4);
        low = (low | (low << 16)) & 0x0000FFFF0000FFFF;
        low = (low | (low << 8)) & 0x00FF00FF00FF00FF;
        low = (low | (low << 4)) & 0x0F0F0F0F0F0F0F0F;
        ulong high = *(ushort*)(w + 2);
        high = (high | (high << 24)) & 0x000000FF000000FF;
        high = (high | (high << 12)) & 0x000F000F000F000F;
        high = (high | (high << 6)) & 0x0303030303030303;
        return Sse41.ConvertToVector128Int16(Vector128.CreateScalarUnsafe(low | (high << 4)).AsSByte() - Vector128.Create((sbyte)32));
    }
}
