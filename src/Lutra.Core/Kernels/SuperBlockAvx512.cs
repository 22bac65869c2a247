using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Lutra.Core.Quants;

namespace Lutra.Core.Kernels;

/// <summary>
/// One Q8_K-paired weight format at AVX-512: where each activation goes in the sidecar (the order the format's
/// code unpack produces), and one super-block's contribution added to a float accumulator.
/// </summary>
internal unsafe interface ISuperBlockAvx512
{
    static abstract GgmlType Type { get; }
    static abstract int BlockBytes { get; }

    /// <summary>Whether the sidecar also holds the negated activations (signed-code formats).</summary>
    static abstract bool NegatedActivations { get; }

    /// <summary>The constant subtracted from every unsigned code (Q3_K 4, Q6_K 32), else 0.</summary>
    static abstract int CodeOffset { get; }

    /// <summary>The super-block element whose activation sits at sidecar position <paramref name="position"/>.</summary>
    static abstract int Source(int position);

    /// <summary>The vpermw index vector that spreads the scales over step <paramref name="step"/> (0..3)'s int16 lanes.</summary>
    static abstract Vector512<short> ScaleLanes(int step);

    /// <summary>acc + this super-block's dot, over sixteen float lanes (summed once per row).</summary>
    static abstract Vector512<float> Accumulate(byte* w, byte* side, Vector512<float> acc,
        Vector512<short> lanes0, Vector512<short> lanes1, Vector512<short> lanes2, Vector512<short> lanes3);
}

/// <summary>
/// The per-input sidecar of the AVX-512 and AVX2 super-block kernels, one record per super-block: everything that
/// does not depend on the weight row, prepared once so the row loop spends its time on the weights.
/// </summary>
internal static unsafe class SuperBlockRecord
{
    /// <summary>256 int8 activations in the format's order.</summary>
    public const int Quants = 0;

    /// <summary>The sixteen 16-element activation sums (int16), in element order.</summary>
    public const int Sums16 = 256;

    /// <summary>Eight int16 zeros, then the eight 32-element activation sums (int16, |sum| ≤ 4064).</summary>
    public const int Sums32 = 288;

    /// <summary>The activation scale d_a (f32).</summary>
    public const int Scale = 320;

    /// <summary>−activations in the format's order (−127..127, so negation is exact), when the format asks.</summary>
    public const int Negated = 384;

    /// <summary>
    /// For formats whose codes carry a constant offset c: c·(a₂ᵢ + a₂ᵢ₊₁) per vpmaddubsw lane (int16, |·| ≤ 32·254), in
    /// the format's order. Subtracting it from each step's pair sums keeps every lane the exact partial dot of the
    /// signed values, so a row of zero values gives exactly zero (an offset folded per super-block would leave
    /// large lanes that cancel only after rounding).
    /// </summary>
    public const int OffsetPairs = 384;

    public static int Stride(bool extra) => extra ? 640 : 384;

    /// <summary>The records of an <paramref name="n"/>-element Q8_K row at <paramref name="state"/>, written to <paramref name="records"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Prepare(byte* state, int n, byte* records, byte[] order, bool negated, int codeOffset)
    {
        var stride = Stride(negated || codeOffset != 0);
        for (var sb = 0; sb < n / SuperBlockSidecar.Size; sb++, records += stride)
        {
            var quants = SuperBlockSidecar.StandardQuants(state, sb);
            var sums = SuperBlockSidecar.Sums(state, sb);
            for (var i = 0; i < SuperBlockSidecar.Size; i++)
                ((sbyte*)records)[Quants + i] = quants[order[i]];
            var sums32 = (short*)(records + Sums32);
            for (var j = 0; j < 16; j++)
            {
                ((short*)(records + Sums16))[j] = sums[j];
                sums32[j] = j < 8 ? (short)0 : (short)(sums[2 * (j - 8)] + sums[2 * (j - 8) + 1]);
            }
            *(float*)(records + Scale) = SuperBlockSidecar.Scale(state, sb);
            if (negated)
            {
                for (var i = 0; i < SuperBlockSidecar.Size; i++)
                    ((sbyte*)records)[Negated + i] = (sbyte)-((sbyte*)records)[Quants + i];
            }
            else if (codeOffset != 0)
            {
                var q = (sbyte*)records + Quants;
                for (var i = 0; i < SuperBlockSidecar.Size / 2; i++)
                    ((short*)(records + OffsetPairs))[i] = (short)(codeOffset * (q[2 * i] + q[2 * i + 1]));
            }
        }
    }

    /// <summary>Sidecar position → super-block element, from a format's <paramref name="source"/> map.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static byte[] BuildOrder(Func<int, int> source)
    {
        var order = new byte[SuperBlockSidecar.Size];
        for (var i = 0; i < order.Length; i++)
            order[i] = (byte)source(i);
        return order;
    }
}

/// <summary>
/// Q8_K-paired weights · Q8_K activations, AVX-512 BW. One weight row per pass (sequential streaming); per super-block
/// the format decodes its codes to unsigned bytes, multiplies them with vpmaddubsw against activations the
/// sidecar already holds in decode order, weights the int16 pairs by the sub-block scales (spread into lanes with
/// one vpermw per 64 elements) with vpmaddwd, and folds mins and code offsets in through activation sums the
/// sidecar precomputed. Integer sums are exact; one FMA per super-block, one horizontal sum per row.
/// </summary>
internal sealed unsafe class SuperBlockMatVecAvx512<TBlock>() : MatVecKernel(TBlock.Type, InstructionSet.Avx512, "AVX-512 maddubs, super-block")
    where TBlock : struct, ISuperBlockAvx512
{
    private static readonly byte[] Order = SuperBlockRecord.BuildOrder(TBlock.Source);
    private static readonly int Stride = SuperBlockRecord.Stride(TBlock.NegatedActivations || TBlock.CodeOffset != 0);

    // The sidecar starts with the format's four scale-lane index vectors: loaded once per call from memory, they
    // stay in registers, where constants would be reloaded from the data section for every super-block (256 bytes
    // of L1 traffic each, next to the 256 bytes of activations).
    private const int LanesBytes = 4 * 64;

    public override int ActivationBytes(int n) => AlignUp(StandardActivationBytes(n)) + LanesBytes + n / SuperBlockSidecar.Size * Stride;

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public override void PrepareActivations(float* x, int n, byte* state)
    {
        SuperBlockSidecar.QuantizeStandard(x, n, state, InstructionSet.Avx512);
        var sidecar = state + AlignUp(StandardActivationBytes(n));
        for (var step = 0; step < 4; step++)
            TBlock.ScaleLanes(step).Store((short*)(sidecar + 64 * step));
        SuperBlockRecord.Prepare(state, n, sidecar + LanesBytes, Order, TBlock.NegatedActivations, TBlock.CodeOffset);
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public override void MatVec(byte* weights, long rowBytes, int rows, byte* state, int n, float* y)
    {
        var sidecar = state + AlignUp(StandardActivationBytes(n));
        var lanes0 = Vector512.Load((short*)sidecar);
        var lanes1 = Vector512.Load((short*)(sidecar + 64));
        var lanes2 = Vector512.Load((short*)(sidecar + 128));
        var lanes3 = Vector512.Load((short*)(sidecar + 192));
        var records = sidecar + LanesBytes;
        var superBlocks = n / SuperBlockSidecar.Size;
        var stride = Stride;
        for (var r = 0; r < rows; r++)
        {
            var w = weights + r * rowBytes;
            var side = records;
            // Two accumulators: a super-block's float step ends in up to two dependent FMAs.
            Vector512<float> acc0 = default, acc1 = default;
            var sb = 0;
            for (; sb + 1 < superBlocks; sb += 2, w += 2 * TBlock.BlockBytes, side += 2 * stride)
            {
                InterleavedSteps.PrefetchStream(w, 2 * TBlock.BlockBytes);
                acc0 = TBlock.Accumulate(w, side, acc0, lanes0, lanes1, lanes2, lanes3);
                acc1 = TBlock.Accumulate(w + TBlock.BlockBytes, side + stride, acc1, lanes0, lanes1, lanes2, lanes3);
            }
            if (sb < superBlocks)
                acc0 = TBlock.Accumulate(w, side, acc0, lanes0, lanes1, lanes2, lanes3);
            y[r] = Vector512.Sum(acc0 + acc1);
        }
    }
}

/// <summary>The AVX-512 super-block building blocks.</summary>
internal static unsafe class SuperBlockAvx512
{
    // Unsigned codes ≤ 63 × int8 activations: vpmaddubsw pairs ≤ 2·63·127 = 16002, no saturation; times a scale
    // |s| ≤ 128 in vpmaddwd, a lane ≤ 2·16002·128, and a super-block's four steps stay far inside int32.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<int> MulAdd(Vector512<byte> codes, byte* a, Vector512<short> scales) =>
        Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(codes, Vector512.Load((sbyte*)a)), scales);

    /// <summary><see cref="MulAdd"/> for codes with a constant offset: the record's offset pair sums come off the int16 pairs.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<int> MulAddOffset(Vector512<byte> codes, byte* a, Vector512<short> scales) =>
        Avx512BW.MultiplyAddAdjacent(
            Avx512BW.MultiplyAddAdjacent(codes, Vector512.Load((sbyte*)a)) - Vector512.Load((short*)(a + SuperBlockRecord.OffsetPairs)), scales);

    /// <summary>32 int16 lanes of <paramref name="table"/> (16 per-sub-block scales) chosen by <paramref name="lanes"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<short> Spread(Vector256<short> table, Vector512<short> lanes) =>
        Avx512BW.PermuteVar32x16(table.ToVector512Unsafe(), lanes);

    /// <summary>
    /// vpmaddubsw lane i of a step covering 16-element sub-blocks: lanes 0..15 belong to <paramref name="lower"/>
    /// and <paramref name="lower"/> + 1, lanes 16..31 to <paramref name="upper"/> and <paramref name="upper"/> + 1.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<short> Lanes16(int lower, int upper)
    {
        var l = (short)lower;
        var u = (short)upper;
        return Vector512.Create(l, l, l, l, l, l, l, l, (short)(l + 1), (short)(l + 1), (short)(l + 1), (short)(l + 1), (short)(l + 1), (short)(l + 1), (short)(l + 1), (short)(l + 1),
            u, u, u, u, u, u, u, u, (short)(u + 1), (short)(u + 1), (short)(u + 1), (short)(u + 1), (short)(u + 1), (short)(u + 1), (short)(u + 1), (short)(u + 1));
    }

    /// <summary>Lanes 0..15 take scale <paramref name="lower"/>, lanes 16..31 scale <paramref name="upper"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<short> Lanes32(int lower, int upper)
    {
        var l = (short)lower;
        var u = (short)upper;
        return Vector512.Create(l, l, l, l, l, l, l, l, l, l, l, l, l, l, l, l, u, u, u, u, u, u, u, u, u, u, u, u, u, u, u, u);
    }

    /// <summary>Dword rotate counts: <paramref name="lower"/> for the lower 256 bits, <paramref name="upper"/> for the upper.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<uint> Rotations(int lower, int upper) => Vector512.Create(
        (uint)lower, (uint)lower, (uint)lower, (uint)lower, (uint)lower, (uint)lower, (uint)lower, (uint)lower,
        (uint)upper, (uint)upper, (uint)upper, (uint)upper, (uint)upper, (uint)upper, (uint)upper, (uint)upper);

    /// <summary>
    /// Moves one bit (or bit pair) of every byte to another position, a different move per 256-bit half: a dword
    /// rotate keeps the wanted bits within their byte as long as they move at most within it, and the caller masks.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<byte> Rotate(Vector512<byte> bits, Vector512<uint> counts) =>
        Avx512F.RotateLeftVariable(bits.AsUInt32(), counts).AsByte();

    /// <summary><paramref name="low"/> | (<paramref name="high"/> &amp; <paramref name="mask"/>) in one vpternlogd.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<byte> OrMasked(Vector512<byte> low, Vector512<byte> high, Vector512<byte> mask) =>
        Avx512F.TernaryLogic(low, high, mask, 0xF8);

    /// <summary>
    /// The same 32 bytes in both halves. Not vbroadcasti64x4 from memory: .NET 10's JIT encodes its constant
    /// displacements with the wrong disp8 scale (base + 16 reads base + 32, base + 128 reads base + 256).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<byte> Broadcast32(byte* p)
    {
        var bytes = Vector256.Load(p);
        return VectorJoin.Join(bytes, bytes);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<byte> ShiftRight(Vector512<byte> q, int bits) => Vector512.ShiftRightLogical(q.AsUInt16(), bits).AsByte();

    /// <summary>
    /// The per-super-block float step acc + d_a·(d·sum − m·mins), mins in the lower eight int32 lanes. The factors are
    /// broadcast straight from memory (the f16 table, the record): load-port work instead of scalar multiplies and
    /// register broadcasts on the busy vector units.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Combine(Vector512<float> acc, Vector512<int> sum, byte* d, Vector256<int> mins, byte* m, byte* record) =>
        Avx512F.FusedMultiplyAdd(
            Avx512F.FusedMultiplyAddNegated(Vector256.ConvertToSingle(mins).ToVector512(), Vector512.Create(HalfLookup.ToSingle(m)),
                Vector512.ConvertToSingle(sum) * Vector512.Create(HalfLookup.ToSingle(d))),
            Vector512.Create(*(float*)(record + SuperBlockRecord.Scale)), acc);

    /// <summary>The per-super-block float step acc + d_a·d·sum (see <see cref="Combine"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Finish(Vector512<float> acc, Vector512<int> sum, byte* d, byte* record) =>
        Avx512F.FusedMultiplyAdd(Vector512.ConvertToSingle(sum) * Vector512.Create(HalfLookup.ToSingle(d)),
            Vector512.Create(*(float*)(record + SuperBlockRecord.Scale)), acc);

    /// <summary>Step k (64 positions) holds elements 32k..32k + 31, then 128 + 32k..128 + 32k + 31.</summary>
    public static int SplitHalves(int position) => position % 32 + 32 * (position / 64) + 128 * (position / 32 % 2);

    /// <summary>
    /// Per 128 elements: the 32-element sub-blocks (0, 2, 1, 3) — the order of the low then high nibbles of 64
    /// bytes that pack sub-blocks 2c and 2c + 1 into the two nibbles of each 32-byte chunk c.
    /// </summary>
    public static int NibblePairs(int position)
    {
        var quarter = position % 128 / 32;
        return position / 128 * 128 + 64 * (quarter & 1) + 32 * (quarter >> 1) + position % 32;
    }
}

/// <summary>Q2_K: 2-bit codes, 4-bit scale and min per 16 elements. Step k holds elements 32k.. and 128 + 32k...</summary>
internal readonly unsafe struct Q2_KAvx512 : ISuperBlockAvx512
{
    public static GgmlType Type => GgmlType.Q2_K;
    public static int BlockBytes => 84;
    public static bool NegatedActivations => false;
    public static int CodeOffset => 0;
    public static int Source(int position) => SuperBlockAvx512.SplitHalves(position);
    public static Vector512<short> ScaleLanes(int step) => SuperBlockAvx512.Lanes16(2 * step, 8 + 2 * step);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Accumulate(byte* w, byte* side, Vector512<float> acc,
        Vector512<short> lanes0, Vector512<short> lanes1, Vector512<short> lanes2, Vector512<short> lanes3)
    {
        var packed = Avx2.ConvertToVector256Int16(Vector128.Load(w));
        var scales = packed & Vector256.Create((short)0x0F);
        var mins = Vector256.ShiftRightLogical(packed, 4);
        var q = Vector512.Load(w + 16);
        var three = Vector512.Create((byte)3);
        var sum = SuperBlockAvx512.MulAdd(q & three, side, SuperBlockAvx512.Spread(scales, lanes0))
            + SuperBlockAvx512.MulAdd(SuperBlockAvx512.ShiftRight(q, 2) & three, side + 64, SuperBlockAvx512.Spread(scales, lanes1))
            + (SuperBlockAvx512.MulAdd(SuperBlockAvx512.ShiftRight(q, 4) & three, side + 128, SuperBlockAvx512.Spread(scales, lanes2))
            + SuperBlockAvx512.MulAdd(SuperBlockAvx512.ShiftRight(q, 6) & three, side + 192, SuperBlockAvx512.Spread(scales, lanes3)));
        var minSums = Avx2.MultiplyAddAdjacent(mins, Vector256.Load((short*)(side + SuperBlockRecord.Sums16)));
        return SuperBlockAvx512.Combine(acc, sum, w + 80, minSums, w + 82, side);
    }
}

/// <summary>Q3_K: codes = low two bits | high-mask bit « 2, value code − 4; signed 6-bit scales. Order as Q2_K.</summary>
internal readonly unsafe struct Q3_KAvx512 : ISuperBlockAvx512
{
    public static GgmlType Type => GgmlType.Q3_K;
    public static int BlockBytes => 110;
    public static bool NegatedActivations => false;
    public static int CodeOffset => 4;
    public static int Source(int position) => SuperBlockAvx512.SplitHalves(position);
    public static Vector512<short> ScaleLanes(int step) => SuperBlockAvx512.Lanes16(2 * step, 8 + 2 * step);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Accumulate(byte* w, byte* side, Vector512<float> acc,
        Vector512<short> lanes0, Vector512<short> lanes1, Vector512<short> lanes2, Vector512<short> lanes3)
    {
        var scales = Q3_KScales.Unpack(w);

        var q = Vector512.Load(w + 32);
        var hmask = SuperBlockAvx512.Broadcast32(w);
        var three = Vector512.Create((byte)3);
        var four = Vector512.Create((byte)4);
        // Step k: high-mask bit k (lower half) and bit 4 + k (upper half) to bit 2.
        var c0 = SuperBlockAvx512.OrMasked(q & three, SuperBlockAvx512.Rotate(hmask, SuperBlockAvx512.Rotations(2, 30)), four);
        var c1 = SuperBlockAvx512.OrMasked(SuperBlockAvx512.ShiftRight(q, 2) & three, SuperBlockAvx512.Rotate(hmask, SuperBlockAvx512.Rotations(1, 29)), four);
        var c2 = SuperBlockAvx512.OrMasked(SuperBlockAvx512.ShiftRight(q, 4) & three, SuperBlockAvx512.Rotate(hmask, SuperBlockAvx512.Rotations(0, 28)), four);
        var c3 = SuperBlockAvx512.OrMasked(SuperBlockAvx512.ShiftRight(q, 6) & three, SuperBlockAvx512.Rotate(hmask, SuperBlockAvx512.Rotations(31, 27)), four);
        var sum = SuperBlockAvx512.MulAddOffset(c0, side, SuperBlockAvx512.Spread(scales, lanes0))
            + SuperBlockAvx512.MulAddOffset(c1, side + 64, SuperBlockAvx512.Spread(scales, lanes1))
            + (SuperBlockAvx512.MulAddOffset(c2, side + 128, SuperBlockAvx512.Spread(scales, lanes2))
            + SuperBlockAvx512.MulAddOffset(c3, side + 192, SuperBlockAvx512.Spread(scales, lanes3)));
        return SuperBlockAvx512.Finish(acc, sum, w + 108, side);
    }
}

/// <summary>The 12-byte 6-bit scales and mins of Q4_K and Q5_K as 16 int16 lanes: scales 0..7, then mins 0..7 (both ISAs).</summary>
internal static unsafe class KQuantScales
{
    /// <summary>From the block start (packed bytes 4..15). Scalar on purpose: the integer units are idle while the vector units are not.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<short> Unpack(byte* block)
    {
        // Scales and mins 0..3 are the low six bits of bytes 4..7 and 8..11; 4..7 take a nibble of bytes 12..15
        // (low for scales, high for mins) and the top two bits of bytes 4..7 (scales) or 8..11 (mins) at bits 4, 5.
        uint u0 = *(uint*)(block + 4), u1 = *(uint*)(block + 8), u2 = *(uint*)(block + 12);
        const uint six = 0x3F3F3F3F, nibbles = 0x0F0F0F0F, tops = 0x30303030;
        var scales = (u0 & six) | ((ulong)((u2 & nibbles) | ((u0 >> 2) & tops)) << 32);
        var mins = (u1 & six) | ((ulong)(((u2 >> 4) & nibbles) | ((u1 >> 2) & tops)) << 32);
        return Avx2.ConvertToVector256Int16(Vector128.Create(scales, mins).AsByte());
    }
}

/// <summary>Q4_K: 4-bit codes, two 32-element sub-blocks per 32-byte chunk (low then high nibbles).</summary>
internal readonly unsafe struct Q4_KAvx512 : ISuperBlockAvx512
{
    public static GgmlType Type => GgmlType.Q4_K;
    public static int BlockBytes => 144;
    public static bool NegatedActivations => false;
    public static int CodeOffset => 0;
    public static int Source(int position) => SuperBlockAvx512.NibblePairs(position);
    public static Vector512<short> ScaleLanes(int step) => SuperBlockAvx512.Lanes32(step / 2 * 4 + step % 2, step / 2 * 4 + step % 2 + 2);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Accumulate(byte* w, byte* side, Vector512<float> acc,
        Vector512<short> lanes0, Vector512<short> lanes1, Vector512<short> lanes2, Vector512<short> lanes3)
    {
        var table = KQuantScales.Unpack(w);
        var nibble = Vector512.Create((byte)0x0F);
        var q0 = Vector512.Load(w + 16);
        var q1 = Vector512.Load(w + 80);
        var sum = SuperBlockAvx512.MulAdd(q0 & nibble, side, SuperBlockAvx512.Spread(table, lanes0))
            + SuperBlockAvx512.MulAdd(SuperBlockAvx512.ShiftRight(q0, 4) & nibble, side + 64, SuperBlockAvx512.Spread(table, lanes1))
            + (SuperBlockAvx512.MulAdd(q1 & nibble, side + 128, SuperBlockAvx512.Spread(table, lanes2))
            + SuperBlockAvx512.MulAdd(SuperBlockAvx512.ShiftRight(q1, 4) & nibble, side + 192, SuperBlockAvx512.Spread(table, lanes3)));
        var minSums = Avx2.MultiplyAddAdjacent(table, Vector256.Load((short*)(side + SuperBlockRecord.Sums32)));
        return SuperBlockAvx512.Combine(acc, sum, w, minSums, w + 2, side);
    }
}

/// <summary>Q5_K: Q4_K's nibbles plus a fifth bit from qh (bit 2c for chunk c's low nibbles, 2c + 1 for its high).</summary>
internal readonly unsafe struct Q5_KAvx512 : ISuperBlockAvx512
{
    public static GgmlType Type => GgmlType.Q5_K;
    public static int BlockBytes => 176;
    public static bool NegatedActivations => false;
    public static int CodeOffset => 0;
    public static int Source(int position) => SuperBlockAvx512.NibblePairs(position);
    public static Vector512<short> ScaleLanes(int step) => SuperBlockAvx512.Lanes32(step / 2 * 4 + step % 2, step / 2 * 4 + step % 2 + 2);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Accumulate(byte* w, byte* side, Vector512<float> acc,
        Vector512<short> lanes0, Vector512<short> lanes1, Vector512<short> lanes2, Vector512<short> lanes3)
    {
        var table = KQuantScales.Unpack(w);
        var nibble = Vector512.Create((byte)0x0F);
        var fifth = Vector512.Create((byte)0x10);
        var qh = SuperBlockAvx512.Broadcast32(w + 16);
        var q0 = Vector512.Load(w + 48);
        var q1 = Vector512.Load(w + 112);
        // Chunks 0, 1 (lower, upper half of q0) use qh bits 0, 2 (low nibbles) and 1, 3 (high); chunks 2, 3 bits 4, 6 and 5, 7.
        var c0 = SuperBlockAvx512.OrMasked(q0 & nibble, SuperBlockAvx512.Rotate(qh, SuperBlockAvx512.Rotations(4, 2)), fifth);
        var c1 = SuperBlockAvx512.OrMasked(SuperBlockAvx512.ShiftRight(q0, 4) & nibble, SuperBlockAvx512.Rotate(qh, SuperBlockAvx512.Rotations(3, 1)), fifth);
        var c2 = SuperBlockAvx512.OrMasked(q1 & nibble, SuperBlockAvx512.Rotate(qh, SuperBlockAvx512.Rotations(0, 30)), fifth);
        var c3 = SuperBlockAvx512.OrMasked(SuperBlockAvx512.ShiftRight(q1, 4) & nibble, SuperBlockAvx512.Rotate(qh, SuperBlockAvx512.Rotations(31, 29)), fifth);
        var sum = SuperBlockAvx512.MulAdd(c0, side, SuperBlockAvx512.Spread(table, lanes0))
            + SuperBlockAvx512.MulAdd(c1, side + 64, SuperBlockAvx512.Spread(table, lanes1))
            + (SuperBlockAvx512.MulAdd(c2, side + 128, SuperBlockAvx512.Spread(table, lanes2))
            + SuperBlockAvx512.MulAdd(c3, side + 192, SuperBlockAvx512.Spread(table, lanes3)));
        var minSums = Avx2.MultiplyAddAdjacent(table, Vector256.Load((short*)(side + SuperBlockRecord.Sums32)));
        return SuperBlockAvx512.Combine(acc, sum, w, minSums, w + 2, side);
    }
}

/// <summary>
/// Q6_K: codes = 4 low bits | 2 high bits « 4, value code − 32; int8 scale per 16 elements. Step k holds elements
/// 32k.. and 128 + 32k.. (Q2_K's order), so the two halves' qh bytes come in one load and shift alike.
/// </summary>
internal readonly unsafe struct Q6_KAvx512 : ISuperBlockAvx512
{
    public static GgmlType Type => GgmlType.Q6_K;
    public static int BlockBytes => 210;
    public static bool NegatedActivations => false;
    public static int CodeOffset => 32;
    public static int Source(int position) => SuperBlockAvx512.SplitHalves(position);
    public static Vector512<short> ScaleLanes(int step) => SuperBlockAvx512.Lanes16(2 * step, 8 + 2 * step);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Accumulate(byte* w, byte* side, Vector512<float> acc,
        Vector512<short> lanes0, Vector512<short> lanes1, Vector512<short> lanes2, Vector512<short> lanes3)
    {
        var scales = Avx2.ConvertToVector256Int16((sbyte*)(w + 192));
        var nibble = Vector512.Create((byte)0x0F);
        var high = Vector512.Create((byte)0x30);
        // Half h: ql[64h + l] holds elements 128h + l (low nibble) and 128h + 64 + l (high), ql[64h + 32 + l]
        // elements 128h + 32 + l and 128h + 96 + l; qh[32h + l] their top bits at 0, 2, 4, 6.
        var first = VectorJoin.Join(Vector256.Load(w), Vector256.Load(w + 64));
        var second = VectorJoin.Join(Vector256.Load(w + 32), Vector256.Load(w + 96));
        var qh = Vector512.Load(w + 128);
        var c0 = SuperBlockAvx512.OrMasked(first & nibble, Vector512.ShiftLeft(qh.AsUInt16(), 4).AsByte(), high);
        var c1 = SuperBlockAvx512.OrMasked(second & nibble, Vector512.ShiftLeft(qh.AsUInt16(), 2).AsByte(), high);
        var c2 = SuperBlockAvx512.OrMasked(SuperBlockAvx512.ShiftRight(first, 4) & nibble, qh, high);
        var c3 = SuperBlockAvx512.OrMasked(SuperBlockAvx512.ShiftRight(second, 4) & nibble, SuperBlockAvx512.ShiftRight(qh, 2), high);
        var sum = SuperBlockAvx512.MulAddOffset(c0, side, SuperBlockAvx512.Spread(scales, lanes0))
            + SuperBlockAvx512.MulAddOffset(c1, side + 64, SuperBlockAvx512.Spread(scales, lanes1))
            + (SuperBlockAvx512.MulAddOffset(c2, side + 128, SuperBlockAvx512.Spread(scales, lanes2))
            + SuperBlockAvx512.MulAddOffset(c3, side + 192, SuperBlockAvx512.Spread(scales, lanes3)));
        return SuperBlockAvx512.Finish(acc, sum, w + 208, side);
    }
}

/// <summary>
/// IQ4_XS: 4-bit indices into the non-linear grid, 6-bit scale − 32 per 32 elements. The grid is negative exactly
/// for indices 0..7, so the product is |grid|·(±a) with the sign picked from the index's bit 3 between the
/// activations and the sidecar's negated copy: no sign arithmetic per row.
/// </summary>
internal readonly unsafe struct IQ4_XSAvx512 : ISuperBlockAvx512
{
    public static GgmlType Type => GgmlType.IQ4_XS;
    public static int BlockBytes => 136;
    public static bool NegatedActivations => true;
    public static int CodeOffset => 0;

    // Per 128 elements (four 32-element sub-blocks j, 16 bytes of qs each): first the low nibbles (elements
    // 32j + 0..15 of each j), then the high nibbles (32j + 16..31).
    public static int Source(int position) => position / 128 * 128 + 32 * (position % 64 / 16) + 16 * (position % 128 / 64) + position % 16;
    public static Vector512<short> ScaleLanes(int step) => Lanes(4 * (step % 2));

    // |grid| in every 128-bit lane, spelled out: Vector512.Create(Vector128) goes through the stack.
    private static Vector512<byte> AbsoluteGrid
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => Vector512.Create(
        (byte)127, 104, 83, 65, 49, 35, 22, 10, 1, 13, 25, 38, 53, 69, 89, 113, 127, 104, 83, 65, 49, 35, 22, 10, 1, 13, 25, 38, 53, 69, 89, 113,
        127, 104, 83, 65, 49, 35, 22, 10, 1, 13, 25, 38, 53, 69, 89, 113, 127, 104, 83, 65, 49, 35, 22, 10, 1, 13, 25, 38, 53, 69, 89, 113);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Accumulate(byte* w, byte* side, Vector512<float> acc,
        Vector512<short> lanes0, Vector512<short> lanes1, Vector512<short> lanes2, Vector512<short> lanes3)
    {
        var scales = IQ4_XSScales.Unpack(w).ToVector256Unsafe();
        var grid = AbsoluteGrid;
        var nibble = Vector512.Create((byte)0x0F);
        var q0 = Vector512.Load(w + 8);
        var q1 = Vector512.Load(w + 72);
        var first = SuperBlockAvx512.Spread(scales, lanes0);
        var second = SuperBlockAvx512.Spread(scales, lanes1);
        var sum = Step(grid, q0 & nibble, Vector512.ShiftLeft(q0.AsUInt16(), 4).AsByte(), side, first)
            + Step(grid, SuperBlockAvx512.ShiftRight(q0, 4) & nibble, q0, side + 64, first)
            + (Step(grid, q1 & nibble, Vector512.ShiftLeft(q1.AsUInt16(), 4).AsByte(), side + 128, second)
            + Step(grid, SuperBlockAvx512.ShiftRight(q1, 4) & nibble, q1, side + 192, second));
        return SuperBlockAvx512.Finish(acc, sum, w, side);
    }

    // 128-bit lane L of a step is sub-block first + L.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<short> Lanes(int first)
    {
        var f = (short)first;
        return Vector512.Create(f, f, f, f, f, f, f, f, (short)(f + 1), (short)(f + 1), (short)(f + 1), (short)(f + 1), (short)(f + 1), (short)(f + 1), (short)(f + 1), (short)(f + 1),
            (short)(f + 2), (short)(f + 2), (short)(f + 2), (short)(f + 2), (short)(f + 2), (short)(f + 2), (short)(f + 2), (short)(f + 2),
            (short)(f + 3), (short)(f + 3), (short)(f + 3), (short)(f + 3), (short)(f + 3), (short)(f + 3), (short)(f + 3), (short)(f + 3));
    }

    // |grid|·a with a negated where the index is below 8 (bit 3 of the index is the top bit of the byte in
    // <paramref name="positive"/>): pairs ≤ 2·127·127, no saturation.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> Step(Vector512<byte> grid, Vector512<byte> indices, Vector512<byte> positive, byte* a, Vector512<short> scales)
    {
        var signed = Avx512BW.BlendVariable(Vector512.Load((sbyte*)(a + SuperBlockRecord.Negated)), Vector512.Load((sbyte*)a), positive.AsSByte());
        return Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(Avx512BW.Shuffle(grid, indices), signed), scales);
    }
}
