using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Lutra.Core.Kernels;

/// <summary>
/// Q8_0 weights · Q8_0 activations, AVX-512. The sidecar holds the activations widened to int16 and their
/// block scales as f32, so a weight block costs one widening load and one vpmaddwd: no sign trick, and the
/// activation work is done once per input instead of once per row. 
/// </summary>
public sealed unsafe class Q8_0MatVecAvx512() : MatVecKernel(Quants.GgmlType.Q8_0, InstructionSet.Avx512, "AVX-512 int16 MAD")
{
    private const int Block = 32;
    private const int BlockBytes = 34;

    public override int ActivationBytes(int n) => AlignUp(StandardActivationBytes(n)) + n * 2 + AlignUp(n / Block * 4);

    private void Sidecar(byte* state, int n, out short* wide, out float* scales)
    {
        wide = (short*)(state + AlignUp(StandardActivationBytes(n)));
        scales = (float*)(wide + n);
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public override void PrepareActivations(float* x, int n, byte* state)
    {
        Q8_0Kernels.QuantizeRowAvx512(x, state, n);
        Sidecar(state, n, out var wide, out var scales);
        for (var b = 0; b < n / Block; b++)
        {
            var block = state + b * BlockBytes;
            Avx512BW.ConvertToVector512Int16(Vector256.Load((sbyte*)(block + 2))).Store(wide + b * Block);
            scales[b] = HalfLookup.ToSingle(block);
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public override void MatVec(byte* weights, long rowBytes, int rows, byte* state, int n, float* y)
    {
        var wide = (short*)(state + AlignUp(StandardActivationBytes(n)));
        var scales = (float*)(wide + n);
        var blocks = n / Block;
        // One row at a time so the weights stream sequentially (see Q4_0MatVecAvx512.MatVec). One accumulator in
        // block order, like the GEMM tile: a token's result is bit-identical alone or in a batch.
        for (var r = 0; r < rows; r++)
        {
            var w = weights + r * rowBytes;
            Vector512<float> acc = default;
            for (var b = 0; b < blocks; b++, w += BlockBytes)
                acc = Step(w, Vector512.Load(wide + b * Block), scales[b], acc);
            y[r] = Vector512.Sum(acc);
        }
    }

    /// <summary>
    /// GEMM tile: four tokens × two rows. Each weight block is widened once and multiplied with four tokens'
    /// activations; the caller keeps the row range small so the weights stay in L1 while the tokens pass.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public override void MatMat(byte* weights, long rowBytes, int rows, byte* states, int stateStride, int tokens, int n, float* y, long yStride)
    {
        var wideOffset = AlignUp(StandardActivationBytes(n));
        var scaleOffset = wideOffset + n * 2;
        var blocks = n / Block;
        var t = 0;
        for (; t + 4 <= tokens; t += 4)
        {
            var s0 = states + (long)t * stateStride;
            var s1 = s0 + stateStride;
            var s2 = s1 + stateStride;
            var s3 = s2 + stateStride;
            short* a0 = (short*)(s0 + wideOffset), a1 = (short*)(s1 + wideOffset), a2 = (short*)(s2 + wideOffset), a3 = (short*)(s3 + wideOffset);
            float* d0 = (float*)(s0 + scaleOffset), d1 = (float*)(s1 + scaleOffset), d2 = (float*)(s2 + scaleOffset), d3 = (float*)(s3 + scaleOffset);
            for (var r = 0; r < rows; r += 2)
            {
                var w0 = weights + r * rowBytes;
                // An odd last row runs as a pair with itself: both halves compute (and store) the same value.
                var w1 = r + 1 < rows ? w0 + rowBytes : w0;
                Vector512<float> c00 = default, c01 = default, c02 = default, c03 = default;
                Vector512<float> c10 = default, c11 = default, c12 = default, c13 = default;
                for (var b = 0; b < blocks; b++, w0 += BlockBytes, w1 += BlockBytes)
                {
                    var x0 = Avx512BW.ConvertToVector512Int16(Vector256.Load((sbyte*)(w0 + 2)));
                    var x1 = Avx512BW.ConvertToVector512Int16(Vector256.Load((sbyte*)(w1 + 2)));
                    var e0 = Vector512.Create(HalfLookup.ToSingle(w0));
                    var e1 = Vector512.Create(HalfLookup.ToSingle(w1));
                    var o = b * Block;
                    var a = Vector512.Load(a0 + o);
                    var d = Vector512.Create(d0[b]);
                    c00 = Mad(x0, a, d, e0, c00);
                    c10 = Mad(x1, a, d, e1, c10);
                    a = Vector512.Load(a1 + o);
                    d = Vector512.Create(d1[b]);
                    c01 = Mad(x0, a, d, e0, c01);
                    c11 = Mad(x1, a, d, e1, c11);
                    a = Vector512.Load(a2 + o);
                    d = Vector512.Create(d2[b]);
                    c02 = Mad(x0, a, d, e0, c02);
                    c12 = Mad(x1, a, d, e1, c12);
                    a = Vector512.Load(a3 + o);
                    d = Vector512.Create(d3[b]);
                    c03 = Mad(x0, a, d, e0, c03);
                    c13 = Mad(x1, a, d, e1, c13);
                }
                var yr = y + t * yStride + r;
                yr[0] = Vector512.Sum(c00);
                yr[yStride] = Vector512.Sum(c01);
                yr[2 * yStride] = Vector512.Sum(c02);
                yr[3 * yStride] = Vector512.Sum(c03);
                if (r + 1 < rows)
                {
                    yr[1] = Vector512.Sum(c10);
                    yr[yStride + 1] = Vector512.Sum(c11);
                    yr[2 * yStride + 1] = Vector512.Sum(c12);
                    yr[3 * yStride + 1] = Vector512.Sum(c13);
                }
            }
        }
        for (; t < tokens; t++)
            MatVec(weights, rowBytes, rows, states + (long)t * stateStride, n, y + t * yStride);
    }

    /// <summary>
    /// acc += (Σw·a · d_a) · d_w for one block. The weight scale multiplies last, so its broadcast is shared by the
    /// tile's tokens and a token costs a MAD, a convert, a multiply and an FMA.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Mad(Vector512<short> w, Vector512<short> a, Vector512<float> activationScale, Vector512<float> weightScale,
        Vector512<float> acc) =>
        Avx512F.FusedMultiplyAdd(Vector512.ConvertToSingle(Avx512BW.MultiplyAddAdjacent(w, a)) * activationScale, weightScale, acc);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Step(byte* block, Vector512<short> a, float activationScale, Vector512<float> acc) =>
        Mad(Avx512BW.ConvertToVector512Int16(Vector256.Load((sbyte*)(block + 2))), a, Vector512.Create(activationScale),
            Vector512.Create(HalfLookup.ToSingle(block)), acc);
}

/// <summary>
/// Q4_0 weights · Q8_0 activations, AVX-512, two blocks per 512-bit step. Weight nibbles are used unsigned
/// (0..15) and the −8 offset is subtracted through precomputed 8·Σa lane sums, which avoids the sign trick.
/// The sidecar stores the activations of each block pair permuted to the order the nibble unpack produces
/// ([lo₀ lo₁ hi₀ hi₁]), those offsets, and the block scales as f32. 
/// </summary>
public sealed unsafe class Q4_0MatVecAvx512() : MatVecKernel(Quants.GgmlType.Q4_0, InstructionSet.Avx512, "AVX-512 maddubs, 2 blocks per step")
{
    private const int Block = 32;
    private const int WeightBlockBytes = 18;
    private const int ActivationBlockBytes = 34;

    internal static int Pairs(int n) => (n / Block + 1) / 2;

    // Sidecar: permuted activations and offsets (64 B per pair each), f32 block scales, then for the GEMM tile the
    // scales spread to the lanes of a pair step and the offsets pre-multiplied by them (64 B per pair each).
    public override int ActivationBytes(int n) =>
        AlignUp(StandardActivationBytes(n)) + Pairs(n) * 64 * 4 + AlignUp(n / Block * 4);

    private int LaneScalesOffset(int n) => PairSidecarEnd(n, StandardActivationBytes(n));

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public override void PrepareActivations(float* x, int n, byte* state)
    {
        var standard = StandardActivationBytes(n);
        PreparePairs(x, n, state, standard);
        var blocks = n / Block;
        var scales = (float*)(state + AlignUp(standard) + Pairs(n) * 128);
        var offsets = (int*)(state + AlignUp(standard) + Pairs(n) * 64);
        var laneScales = (float*)(state + LaneScalesOffset(n));
        var laneOffsets = laneScales + Pairs(n) * 16;
        var scaleLanes = Vector512.Create(0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1);
        for (var p = 0; p < Pairs(n); p++)
        {
            var pair = Vector128.Create(scales[2 * p], 2 * p + 1 < blocks ? scales[2 * p + 1] : 0f, 0f, 0f);
            var lanes = Avx512F.PermuteVar16x32(pair.ToVector256Unsafe().ToVector512Unsafe(), scaleLanes);
            lanes.Store(laneScales + 16 * p);
            (-(lanes * Vector512.ConvertToSingle(Vector512.Load(offsets + 16 * p)))).Store(laneOffsets + 16 * p);
        }
    }

    /// <summary>Bytes of the standard row plus the shared sidecar part (permuted activations, offsets, f32 scales).</summary>
    internal static int PairSidecarEnd(int n, int standardBytes) => AlignUp(standardBytes) + Pairs(n) * 64 * 2 + AlignUp(n / Block * 4);

    /// <summary>
    /// The standard Q8_0 row and the sidecar part shared with <see cref="Q4_0MatVecAvxVnni"/>: each block pair's
    /// activations permuted to [lo₀ lo₁ hi₀ hi₁], the 8·Σa lane sums, and the block scales as f32.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void PreparePairs(float* x, int n, byte* state, int standardBytes)
    {
        Q8_0Kernels.QuantizeRowAvx512(x, state, n);
        var permuted = (sbyte*)(state + AlignUp(standardBytes));
        var offsets = (int*)(permuted + Pairs(n) * 64);
        var scales = (float*)(offsets + Pairs(n) * 16);
        var blocks = n / Block;
        var eights = Vector512.Create((byte)8);
        for (var p = 0; p < Pairs(n); p++)
        {
            var q0 = (sbyte*)(state + 2 * p * ActivationBlockBytes + 2);
            var dst = permuted + 64 * p;
            if (2 * p + 1 < blocks)
            {
                var q1 = q0 + ActivationBlockBytes;
                Vector128.Load(q0).Store(dst);
                Vector128.Load(q1).Store(dst + 16);
                Vector128.Load(q0 + 16).Store(dst + 32);
                Vector128.Load(q1 + 16).Store(dst + 48);
            }
            else
            {
                // A lone last block keeps element order in the lower half, matching the 256-bit tail step.
                Vector256.Load(q0).Store(dst);
                Vector256<sbyte>.Zero.Store(dst + 32);
            }
            var sums = Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(eights, Vector512.Load(dst)), Vector512<short>.One);
            sums.Store(offsets + 16 * p);
        }
        for (var b = 0; b < blocks; b++)
            scales[b] = HalfLookup.ToSingle(state + b * ActivationBlockBytes);
    }

    /// <summary>
    /// GEMM tile: four tokens × two rows. A weight block pair is unpacked once for four tokens. Per token the
    /// integer pair sums become d_a·Σq·a − d_a·8Σa with one FMA against lane-spread activation scales and
    /// pre-scaled offsets from the sidecar, then one FMA with the weight scales.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public override void MatMat(byte* weights, long rowBytes, int rows, byte* states, int stateStride, int tokens, int n, float* y, long yStride)
    {
        var permutedOffset = AlignUp(StandardActivationBytes(n));
        var offsetsOffset = permutedOffset + Pairs(n) * 64;
        var scalesOffset = offsetsOffset + Pairs(n) * 64;
        var laneScalesOffset = LaneScalesOffset(n);
        var laneOffsetsOffset = laneScalesOffset + Pairs(n) * 64;
        var blocks = n / Block;
        var fullPairs = blocks / 2;
        var scaleLanes = Vector512.Create(0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1);
        // Loop constants as locals: created inside the inlined helpers they were re-broadcast every block pair.
        var mask = Vector256.Create((byte)0x0F);
        var ones = Vector512<short>.One;
        var t = 0;
        for (; t + 4 <= tokens; t += 4)
        {
            var s0 = states + (long)t * stateStride;
            var s1 = s0 + stateStride;
            var s2 = s1 + stateStride;
            var s3 = s2 + stateStride;
            for (var r = 0; r < rows; r += 2)
            {
                var row0 = weights + r * rowBytes;
                // An odd last row runs as a pair with itself: both halves compute (and store) the same value.
                var row1 = r + 1 < rows ? row0 + rowBytes : row0;
                var w0 = row0;
                var w1 = row1;
                Vector512<float> c00 = default, c01 = default, c02 = default, c03 = default;
                Vector512<float> c10 = default, c11 = default, c12 = default, c13 = default;
                for (var p = 0; p < fullPairs; p++, w0 += 2 * WeightBlockBytes, w1 += 2 * WeightBlockBytes)
                {
                    var x0 = Nibbles(w0, mask);
                    var x1 = Nibbles(w1, mask);
                    var e0 = WeightScales(w0, scaleLanes);
                    var e1 = WeightScales(w1, scaleLanes);
                    var o = 64 * p;
                    (c00, c10) = PairMad(x0, x1, e0, e1, s0 + permutedOffset + o, s0 + laneScalesOffset + o, s0 + laneOffsetsOffset + o, ones, c00, c10);
                    (c01, c11) = PairMad(x0, x1, e0, e1, s1 + permutedOffset + o, s1 + laneScalesOffset + o, s1 + laneOffsetsOffset + o, ones, c01, c11);
                    (c02, c12) = PairMad(x0, x1, e0, e1, s2 + permutedOffset + o, s2 + laneScalesOffset + o, s2 + laneOffsetsOffset + o, ones, c02, c12);
                    (c03, c13) = PairMad(x0, x1, e0, e1, s3 + permutedOffset + o, s3 + laneScalesOffset + o, s3 + laneOffsetsOffset + o, ones, c03, c13);
                }
                var yr = y + t * yStride + r;
                yr[0] = Vector512.Sum(c00) + TokenTail(row0, s0, permutedOffset, offsetsOffset, scalesOffset, blocks);
                yr[yStride] = Vector512.Sum(c01) + TokenTail(row0, s1, permutedOffset, offsetsOffset, scalesOffset, blocks);
                yr[2 * yStride] = Vector512.Sum(c02) + TokenTail(row0, s2, permutedOffset, offsetsOffset, scalesOffset, blocks);
                yr[3 * yStride] = Vector512.Sum(c03) + TokenTail(row0, s3, permutedOffset, offsetsOffset, scalesOffset, blocks);
                if (r + 1 < rows)
                {
                    yr[1] = Vector512.Sum(c10) + TokenTail(row1, s0, permutedOffset, offsetsOffset, scalesOffset, blocks);
                    yr[yStride + 1] = Vector512.Sum(c11) + TokenTail(row1, s1, permutedOffset, offsetsOffset, scalesOffset, blocks);
                    yr[2 * yStride + 1] = Vector512.Sum(c12) + TokenTail(row1, s2, permutedOffset, offsetsOffset, scalesOffset, blocks);
                    yr[3 * yStride + 1] = Vector512.Sum(c13) + TokenTail(row1, s3, permutedOffset, offsetsOffset, scalesOffset, blocks);
                }
            }
        }
        for (; t < tokens; t++)
            MatVec(weights, rowBytes, rows, states + (long)t * stateStride, n, y + t * yStride);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<byte> Nibbles(byte* w, Vector256<byte> mask)
    {
        var nibbles = VectorJoin.Join(Vector128.Load(w + 2), Vector128.Load(w + WeightBlockBytes + 2));
        var low = nibbles & mask;
        var high = Vector256.ShiftRightLogical(nibbles.AsUInt16(), 4).AsByte() & mask;
        return VectorJoin.Join(low, high);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> WeightScales(byte* w, Vector512<int> scaleLanes) =>
        Avx512F.PermuteVar16x32(Vector128.Create(HalfLookup.ToSingle(w), HalfLookup.ToSingle(w + WeightBlockBytes), 0f, 0f)
            .ToVector256Unsafe().ToVector512Unsafe(), scaleLanes);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector512<float>, Vector512<float>) PairMad(Vector512<byte> x0, Vector512<byte> x1, Vector512<float> e0, Vector512<float> e1,
        byte* activations, byte* laneScales, byte* laneOffsets, Vector512<short> ones, Vector512<float> c0, Vector512<float> c1)
    {
        var a = Vector512.Load((sbyte*)activations);
        var da = Vector512.Load((float*)laneScales);
        var offset = Vector512.Load((float*)laneOffsets);
        var s0 = Avx512F.FusedMultiplyAdd(Vector512.ConvertToSingle(Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(x0, a), ones)), da, offset);
        var s1 = Avx512F.FusedMultiplyAdd(Vector512.ConvertToSingle(Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(x1, a), ones)), da, offset);
        return (Avx512F.FusedMultiplyAdd(s0, e0, c0), Avx512F.FusedMultiplyAdd(s1, e1, c1));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float TokenTail(byte* row, byte* state, int permutedOffset, int offsetsOffset, int scalesOffset, int blocks) =>
        Tail(row, (sbyte*)(state + permutedOffset), (int*)(state + offsetsOffset), (float*)(state + scalesOffset), blocks);

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public override void MatVec(byte* weights, long rowBytes, int rows, byte* state, int n, float* y)
    {
        // Sidecar pointers as plain locals (out-parameters would keep them in memory inside the loop).
        var permuted = (sbyte*)(state + AlignUp(StandardActivationBytes(n)));
        var offsets = (int*)(permuted + Pairs(n) * 64);
        var scales = (float*)(offsets + Pairs(n) * 16);
        var laneScales = (float*)(state + LaneScalesOffset(n));
        var laneOffsets = laneScales + Pairs(n) * 16;
        var blocks = n / Block;
        var fullPairs = blocks / 2;
        // Lane → block of a pair step's int32 sums: [b₀ ×4, b₁ ×4, b₀ ×4, b₁ ×4].
        var scaleLanes = Vector512.Create(0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1);
        var mask = Vector256.Create((byte)0x0F);
        // One row at a time: the weights then stream from memory sequentially. Interleaving several rows
        // (to share activation loads) measured at half the read bandwidth here; the activations stay in L1/L2.
        // The arithmetic and its order are the GEMM tile's (one accumulator, same FMAs), so a token's result is
        // bit-identical whether it is evaluated alone or in a batch.
        for (var r = 0; r < rows; r++)
        {
            var w = weights + r * rowBytes;
            Vector512<float> acc = default;
            for (var p = 0; p < fullPairs; p++, w += 2 * WeightBlockBytes)
            {
                var sums = Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(Nibbles(w, mask), Vector512.Load(permuted + 64 * p)), Vector512<short>.One);
                var scaled = Avx512F.FusedMultiplyAdd(Vector512.ConvertToSingle(sums), Vector512.Load(laneScales + 16 * p), Vector512.Load(laneOffsets + 16 * p));
                acc = Avx512F.FusedMultiplyAdd(scaled, WeightScales(w, scaleLanes), acc);
            }
            y[r] = Vector512.Sum(acc) + Tail(weights + r * rowBytes, permuted, offsets, scales, blocks);
        }
    }

    // Inlined on purpose: a call here would force the four accumulators out of registers inside the loop
    // (every vector register is caller-saved).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float Tail(byte* row, sbyte* permuted, int* offsets, float* scales, int blocks)
    {
        if ((blocks & 1) == 0)
            return 0;
        var b = blocks - 1;
        var w = row + b * WeightBlockBytes;
        var p = b / 2;
        var nibbles = Vector128.Load(w + 2);
        var low = nibbles & Vector128.Create((byte)0x0F);
        var high = Vector128.ShiftRightLogical(nibbles.AsUInt16(), 4).AsByte() & Vector128.Create((byte)0x0F);
        var sums = Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(VectorJoin.Join(low, high), Vector256.Load(permuted + 64 * p)), Vector256<short>.One)
            - Vector256.Load(offsets + 16 * p);
        return Vector256.Sum(sums) * (HalfLookup.ToSingle(w) * scales[b]);
    }
}

/// <summary>
/// Q4_0 weights · Q8_0 activations on AVX-512 machines that also have AVX-VNNI (Zen 4, Sapphire Rapids, …; .NET
/// exposes vpdpbusd only in its 256-bit VEX form). Per block pair, two vpdpbusd into one int32 vector seeded with
/// −8·Σa: the four-byte sums of the low and the high nibbles land in the same lanes, so the pair comes out as
/// [b₀ ×4, b₁ ×4] with the offset already applied, and the float work (convert, activation scale, FMA with the
/// weight scales) runs on eight lanes. MatVec and the GEMM tile (four tokens × two rows) do the same arithmetic in
/// the same order, so a token's result does not depend on batching.
/// </summary>
public sealed unsafe class Q4_0MatVecAvxVnni() : MatVecKernel(Quants.GgmlType.Q4_0, InstructionSet.Avx512, "AVX-VNNI dpbusd, 4 tokens x 2 rows")
{
    private const int Block = 32;
    private const int WeightBlockBytes = 18;

    private static int Pairs(int n) => Q4_0MatVecAvx512.Pairs(n);

    // Sidecar: the part shared with Q4_0MatVecAvx512 (permuted activations, offsets, f32 scales; the odd-block tail
    // uses them), then one 128-byte record per pair, so a token's step reads from one advancing pointer: the permuted
    // activations [lo₀ lo₁ | hi₀ hi₁] (64 B), −8·Σa as eight int32 lanes and the activation scales as [d₀ ×4, d₁ ×4].
    private const int RecordBytes = 128;

    public override int ActivationBytes(int n) => Q4_0MatVecAvx512.PairSidecarEnd(n, StandardActivationBytes(n)) + Pairs(n) * RecordBytes;

    private int LanesOffset(int n) => Q4_0MatVecAvx512.PairSidecarEnd(n, StandardActivationBytes(n));

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public override void PrepareActivations(float* x, int n, byte* state)
    {
        var standard = StandardActivationBytes(n);
        Q4_0MatVecAvx512.PreparePairs(x, n, state, standard);
        var permuted = state + AlignUp(standard);
        var offsets = (int*)(permuted + Pairs(n) * 64);
        var scales = (float*)(offsets + Pairs(n) * 16);
        var records = state + LanesOffset(n);
        var blocks = n / Block;
        for (var p = 0; p < Pairs(n); p++)
        {
            var record = records + RecordBytes * p;
            Vector512.Load(permuted + 64 * p).Store(record);
            // vpdpbusd lane k sums bytes 4k..4k+3 of the low half and of the high half: lanes k and k + 8 of the
            // 512-bit offset sums.
            var sums = Vector512.Load(offsets + 16 * p);
            (-(sums.GetLower() + sums.GetUpper())).Store((int*)(record + 64));
            var d1 = 2 * p + 1 < blocks ? scales[2 * p + 1] : 0f;
            Vector256.Create(scales[2 * p], scales[2 * p], scales[2 * p], scales[2 * p], d1, d1, d1, d1).Store((float*)(record + 96));
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public override void MatVec(byte* weights, long rowBytes, int rows, byte* state, int n, float* y)
    {
        var standard = StandardActivationBytes(n);
        var permuted = (sbyte*)(state + AlignUp(standard));
        var offsets = (int*)(permuted + Pairs(n) * 64);
        var scales = (float*)(offsets + Pairs(n) * 16);
        var records = state + LanesOffset(n);
        var blocks = n / Block;
        var fullPairs = blocks / 2;
        var mask = Vector256.Create((byte)0x0F);
        var scaleLanes = Vector256.Create(0, 0, 0, 0, 1, 1, 1, 1);
        for (var r = 0; r < rows; r++)
        {
            var w = weights + r * rowBytes;
            var record = records;
            Vector256<float> acc = default;
            for (var p = 0; p < fullPairs; p++, w += 2 * WeightBlockBytes, record += RecordBytes)
            {
                var (low, high) = Nibbles(w, mask);
                acc = Mad(low, high, WeightScales(w, scaleLanes), record, acc);
            }
            y[r] = Vector256.Sum(acc) + Q4_0MatVecAvx512.Tail(weights + r * rowBytes, permuted, offsets, scales, blocks);
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public override void MatMat(byte* weights, long rowBytes, int rows, byte* states, int stateStride, int tokens, int n, float* y, long yStride)
    {
        var standard = StandardActivationBytes(n);
        var permutedOffset = AlignUp(standard);
        var offsetsOffset = permutedOffset + Pairs(n) * 64;
        var scalesOffset = offsetsOffset + Pairs(n) * 64;
        var recordsOffset = LanesOffset(n);
        var blocks = n / Block;
        var fullPairs = blocks / 2;
        var mask = Vector256.Create((byte)0x0F);
        var scaleLanes = Vector256.Create(0, 0, 0, 0, 1, 1, 1, 1);
        var t = 0;
        for (; t + 4 <= tokens; t += 4)
        {
            var s0 = states + (long)t * stateStride;
            var s1 = s0 + stateStride;
            var s2 = s1 + stateStride;
            var s3 = s2 + stateStride;
            for (var r = 0; r < rows; r += 2)
            {
                var row0 = weights + r * rowBytes;
                // An odd last row runs as a pair with itself: both halves compute (and store) the same value.
                var row1 = r + 1 < rows ? row0 + rowBytes : row0;
                var w0 = row0;
                var w1 = row1;
                byte* r0 = s0 + recordsOffset, r1 = s1 + recordsOffset, r2 = s2 + recordsOffset, r3 = s3 + recordsOffset;
                Vector256<float> c00 = default, c01 = default, c02 = default, c03 = default;
                Vector256<float> c10 = default, c11 = default, c12 = default, c13 = default;
                for (var p = 0; p < fullPairs; p++, w0 += 2 * WeightBlockBytes, w1 += 2 * WeightBlockBytes,
                     r0 += RecordBytes, r1 += RecordBytes, r2 += RecordBytes, r3 += RecordBytes)
                {
                    var (low0, high0) = Nibbles(w0, mask);
                    var (low1, high1) = Nibbles(w1, mask);
                    var e0 = WeightScales(w0, scaleLanes);
                    var e1 = WeightScales(w1, scaleLanes);
                    c00 = Mad(low0, high0, e0, r0, c00);
                    c10 = Mad(low1, high1, e1, r0, c10);
                    c01 = Mad(low0, high0, e0, r1, c01);
                    c11 = Mad(low1, high1, e1, r1, c11);
                    c02 = Mad(low0, high0, e0, r2, c02);
                    c12 = Mad(low1, high1, e1, r2, c12);
                    c03 = Mad(low0, high0, e0, r3, c03);
                    c13 = Mad(low1, high1, e1, r3, c13);
                }
                var yr = y + t * yStride + r;
                yr[0] = Vector256.Sum(c00) + Q4_0MatVecAvx512.TokenTail(row0, s0, permutedOffset, offsetsOffset, scalesOffset, blocks);
                yr[yStride] = Vector256.Sum(c01) + Q4_0MatVecAvx512.TokenTail(row0, s1, permutedOffset, offsetsOffset, scalesOffset, blocks);
                yr[2 * yStride] = Vector256.Sum(c02) + Q4_0MatVecAvx512.TokenTail(row0, s2, permutedOffset, offsetsOffset, scalesOffset, blocks);
                yr[3 * yStride] = Vector256.Sum(c03) + Q4_0MatVecAvx512.TokenTail(row0, s3, permutedOffset, offsetsOffset, scalesOffset, blocks);
                if (r + 1 < rows)
                {
                    yr[1] = Vector256.Sum(c10) + Q4_0MatVecAvx512.TokenTail(row1, s0, permutedOffset, offsetsOffset, scalesOffset, blocks);
                    yr[yStride + 1] = Vector256.Sum(c11) + Q4_0MatVecAvx512.TokenTail(row1, s1, permutedOffset, offsetsOffset, scalesOffset, blocks);
                    yr[2 * yStride + 1] = Vector256.Sum(c12) + Q4_0MatVecAvx512.TokenTail(row1, s2, permutedOffset, offsetsOffset, scalesOffset, blocks);
                    yr[3 * yStride + 1] = Vector256.Sum(c13) + Q4_0MatVecAvx512.TokenTail(row1, s3, permutedOffset, offsetsOffset, scalesOffset, blocks);
                }
            }
        }
        for (; t < tokens; t++)
            MatVec(weights, rowBytes, rows, states + (long)t * stateStride, n, y + t * yStride);
    }

    /// <summary>A block pair's nibbles: [lo₀ lo₁] and [hi₀ hi₁], the order of the permuted activations' two halves.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector256<byte> Low, Vector256<byte> High) Nibbles(byte* w, Vector256<byte> mask)
    {
        var bytes = VectorJoin.Join(Vector128.Load(w + 2), Vector128.Load(w + WeightBlockBytes + 2));
        return (bytes & mask, Vector256.ShiftRightLogical(bytes.AsUInt16(), 4).AsByte() & mask);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> WeightScales(byte* w, Vector256<int> scaleLanes) =>
        Avx2.PermuteVar8x32(Vector128.Create(HalfLookup.ToSingle(w), HalfLookup.ToSingle(w + WeightBlockBytes), 0f, 0f).ToVector256Unsafe(), scaleLanes);

    /// <summary>acc += (Σ(q − 8)·a · d_a) ⊙ d_w for one block pair of one row and one token's record.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Mad(Vector256<byte> low, Vector256<byte> high, Vector256<float> weightScales, byte* record, Vector256<float> acc)
    {
        var sums = AvxVnni.MultiplyWideningAndAdd(AvxVnni.MultiplyWideningAndAdd(Vector256.Load((int*)(record + 64)), low, Vector256.Load((sbyte*)record)),
            high, Vector256.Load((sbyte*)record + 32));
        return Fma.MultiplyAdd(Vector256.ConvertToSingle(sums) * Vector256.Load((float*)(record + 96)), weightScales, acc);
    }
}
