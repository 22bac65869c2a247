using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Lutra.Core.Kernels;

/// <summary>
/// Several tokens over one weight tile. Q4_0/Q4_1: four tokens at a time, each index vector is loaded and split into
/// nibbles once and looked up in every token's tables (broadcast from the state, since a token's 8 table pairs no
/// longer fit in registers next to the others'), and the f16 scales are converted once per chunk. Q2_K: four (or
/// two) tokens share each sub-block pair's nibbles and scale and min unpacks. Per token the integer sums and the
/// f32 epilogue are those of MatVec, in the same order, so the results are bit-identical to it.
/// <para>
/// The 5-trit ternary kernel has no batched form: three layouts of it (64 rows × 8 tokens, 128 rows × 4 tokens,
/// and the planes summed without the unpack) measured 0.66-1.06x the per-token loop, whose weight tile already
/// stays in L2 across the batch; its cost is the per-token byte permutes.
/// </para>
/// </summary>
public sealed unsafe partial class BitSerialLutAvx512
{
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void MatMat(byte* weights, long rowBytes, int rows, byte* states, int stateStride, int tokens, int n, float* y, long yStride)
    {
        if (WeightType == Quants.GgmlType.Q2_K)
        {
            // One 8192x2048 matrix: groups of 4 measured 1.17-1.28x the per-token loop, of 2 1.10-1.21x. Four tokens leave some
            // int32 accumulators in memory (the JIT spills 5 of the 16 in the pair loop); 8 would spill far more.
            var k = 0;
            for (; tokens - k >= 4; k += 4)
                Q2_KBatch(4, weights, rowBytes, rows, states + (long)k * stateStride, stateStride, n, y + k * yStride, yStride);
            for (; tokens - k >= 2; k += 2)
                Q2_KBatch(2, weights, rowBytes, rows, states + (long)k * stateStride, stateStride, n, y + k * yStride, yStride);
            if (k < tokens)
                MatVec(weights, rowBytes, rows, states + (long)k * stateStride, n, y + k * yStride);
            return;
        }
        // Groups of 4 measured 3-9 % faster than 4 MatVec calls on one 8192x2048 matrix; groups of 2 measured no
        // faster (0.97-1.01x) and 8 tokens' accumulators would not fit in the 32 registers, so the rest go one by one.
        var t = 0;
        for (; tokens - t >= Group; t += Group)
            Batch(weights, rowBytes, rows, states + (long)t * stateStride, stateStride, n, y + t * yStride, yStride);
        for (; t < tokens; t++)
            MatVec(weights, rowBytes, rows, states + (long)t * stateStride, n, y + t * yStride);
    }

    private const int Group = 4;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Batch(byte* weights, long rowBytes, int rows, byte* states, int stride, int n, float* y, long yStride)
    {
        var sidecar = Sidecar(states, n);
        var tile = RowTile;
        for (var first = 0; first < rows; first += tile)
        {
            var h = Math.Min(tile, rows - first);
            var w = weights + first * rowBytes;
            var full = h / ChunkRows;
            if (full > 0)
                Q4ChunksBatch(w, h, full, sidecar, stride, n / 32, y + first, yStride, WeightType == Quants.GgmlType.Q4_1);
            if (h % ChunkRows != 0)
                for (var k = 0; k < Group; k++)
                    BitSerialLutReference.Chunk(WeightType, w, h, full, sidecar + (long)k * stride, n, y + k * yStride + first + full * ChunkRows);
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void Q4ChunksBatch(byte* tile, int h, int chunks, byte* sidecar, int stride, int blocks, float* y, long yStride, bool hasMin)
    {
        var blockBytes = hasMin ? 20 : 18;
        var chunkBytes = ChunkRows * blockBytes;
        var blockStride = (long)h * blockBytes;
        for (var k = 0; k < Group; k++)
            for (var i = 0; i < chunks * ChunkRows; i += 16)
                Vector512<float>.Zero.Store(y + k * yStride + i);
        var nibble = Vector512.Create((byte)0x0F);
        var planes01 = Vector512.Create((ushort)0x0201).AsByte();
        var planes23 = Vector512.Create((ushort)0x0804).AsByte();
        for (var b = 0; b < blocks; b++, tile += blockStride, sidecar += Q4Record)
        {
            var w = tile;
            var yc = y;
            for (var c = 0; c < chunks; c++, w += chunkBytes, yc += ChunkRows)
            {
                Vector512<short> acc0 = default, acc1 = default, acc2 = default, acc3 = default;
                Vector512<sbyte> lo0 = default, lo1 = default, lo2 = default, lo3 = default;
                Vector512<sbyte> hi0 = default, hi1 = default, hi2 = default, hi3 = default;
                for (var j = 0; j < 8; j++)
                {
                    var v = Vector512.Load(w + 64 * j);
                    var lowNibbles = (v & nibble).AsSByte();
                    var highNibbles = HighNibbles(v).AsSByte();
                    var table = sidecar + 32 * j;
                    LookupToken(lowNibbles, highNibbles, table, planes01, planes23, ref acc0, ref lo0, ref hi0);
                    LookupToken(lowNibbles, highNibbles, table + stride, planes01, planes23, ref acc1, ref lo1, ref hi1);
                    LookupToken(lowNibbles, highNibbles, table + 2 * stride, planes01, planes23, ref acc2, ref lo2, ref hi2);
                    LookupToken(lowNibbles, highNibbles, table + 3 * stride, planes01, planes23, ref acc3, ref lo3, ref hi3);
                }
                var d0 = HalfToSingle(Vector256.Load((short*)(w + 512)));
                var d1 = HalfToSingle(Vector256.Load((short*)(w + 544)));
                var m0 = hasMin ? HalfToSingle(Vector256.Load((short*)(w + 576))) : default;
                var m1 = hasMin ? HalfToSingle(Vector256.Load((short*)(w + 608))) : default;
                Epilogue(acc0, lo0, hi0, (float*)(sidecar + 256), planes01, planes23, d0, d1, m0, m1, hasMin, yc);
                Epilogue(acc1, lo1, hi1, (float*)(sidecar + stride + 256), planes01, planes23, d0, d1, m0, m1, hasMin, yc + yStride);
                Epilogue(acc2, lo2, hi2, (float*)(sidecar + 2 * stride + 256), planes01, planes23, d0, d1, m0, m1, hasMin, yc + 2 * yStride);
                Epilogue(acc3, lo3, hi3, (float*)(sidecar + 3 * stride + 256), planes01, planes23, d0, d1, m0, m1, hasMin, yc + 3 * yStride);
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Q2_KBatch(int group, byte* weights, long rowBytes, int rows, byte* states, int stride, int n, float* y, long yStride)
    {
        var sidecar = Sidecar(states, n);
        for (var first = 0; first < rows; first += ChunkRows)
        {
            var h = Math.Min(ChunkRows, rows - first);
            var w = weights + first * rowBytes;
            if (h == ChunkRows && group == 4)
                Q2_KChunkQuad(w, sidecar, stride, n / 256, y + first, yStride);
            else if (h == ChunkRows)
                Q2_KChunkPair(w, sidecar, stride, n / 256, y + first, yStride);
            else
                for (var k = 0; k < group; k++)
                    BitSerialLutReference.Chunk(WeightType, w, h, 0, sidecar + (long)k * stride, n, y + k * yStride + first);
        }
    }

    /// <summary>
    /// <see cref="Q2_KChunk"/> for two tokens: per pair of sub-blocks the index nibbles and the scale and min
    /// unpacks are computed once; each token's row sums accumulate in y (in scale-position order, permuted at the end).
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void Q2_KChunkPair(byte* w, byte* sidecar, int stride, int superBlocks, float* y, long yStride)
    {
        var nibble = Vector512.Create((byte)0x0F);
        var planes01 = Vector512.Create((ushort)0x0201).AsByte();
        var planes01Times4 = Vector512.Create((ushort)0x0804).AsByte();
        var low4 = Vector512.Create((short)0x0F);
        var ya = y;
        var yb = y + yStride;
        Vector512<float>.Zero.Store(ya);
        Vector512<float>.Zero.Store(ya + 16);
        Vector512<float>.Zero.Store(yb);
        Vector512<float>.Zero.Store(yb + 16);
        for (var sb = 0; sb < superBlocks; sb++)
        {
            Vector512<int> ea0 = default, ea1 = default, ca0 = default, ca1 = default;
            Vector512<int> eb0 = default, eb1 = default, cb0 = default, cb1 = default;
            for (var p = 0; p < 8; p++, w += 320, sidecar += Q2_KPairRecord)
            {
                var v0 = Vector512.Load(w);
                var v1 = Vector512.Load(w + 64);
                var lowA0 = (v0 & nibble).AsSByte();
                var highA0 = HighNibbles(v0).AsSByte();
                var lowA1 = (v1 & nibble).AsSByte();
                var highA1 = HighNibbles(v1).AsSByte();
                v0 = Vector512.Load(w + 128);
                v1 = Vector512.Load(w + 192);
                var lowB0 = (v0 & nibble).AsSByte();
                var highB0 = HighNibbles(v0).AsSByte();
                var lowB1 = (v1 & nibble).AsSByte();
                var highB1 = HighNibbles(v1).AsSByte();
                var scales = Vector512.Load(w + 256);
                var sa = Avx512BW.ConvertToVector512Int16(scales.GetLower());
                var sbv = Avx512BW.ConvertToVector512Int16(scales.GetUpper());
                var scA = sa & low4;
                var scB = sbv & low4;
                var scLow = Avx512BW.UnpackLow(scA, scB);
                var scHigh = Avx512BW.UnpackHigh(scA, scB);
                var mA = Avx512BW.ShiftRightLogical(sa, 4);
                var mB = Avx512BW.ShiftRightLogical(sbv, 4);
                var mLow = Avx512BW.UnpackLow(mA, mB);
                var mHigh = Avx512BW.UnpackHigh(mA, mB);
                PairToken(lowA0, highA0, lowA1, highA1, lowB0, highB0, lowB1, highB1, sidecar, planes01, planes01Times4, scLow, scHigh, mLow, mHigh,
                    ref ea0, ref ea1, ref ca0, ref ca1);
                PairToken(lowA0, highA0, lowA1, highA1, lowB0, highB0, lowB1, highB1, sidecar + stride, planes01, planes01Times4, scLow, scHigh,
                    mLow, mHigh, ref eb0, ref eb1, ref cb0, ref cb1);
            }
            var d0 = HalfToSingle(Vector256.Load((short*)w));
            var d1 = HalfToSingle(Vector256.Load((short*)(w + 32)));
            var dmin0 = HalfToSingle(Vector256.Load((short*)(w + 64)));
            var dmin1 = HalfToSingle(Vector256.Load((short*)(w + 96)));
            SuperBlockEpilogue(ea0, ea1, ca0, ca1, (float*)sidecar, d0, d1, dmin0, dmin1, ya);
            SuperBlockEpilogue(eb0, eb1, cb0, cb1, (float*)(sidecar + stride), d0, d1, dmin0, dmin1, yb);
            w += 128;
            sidecar += 16;
        }
        RowOrder(ya);
        RowOrder(yb);
    }

    /// <summary><see cref="Q2_KChunkPair"/> for four tokens.</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void Q2_KChunkQuad(byte* w, byte* sidecar, int stride, int superBlocks, float* y, long yStride)
    {
        var nibble = Vector512.Create((byte)0x0F);
        var planes01 = Vector512.Create((ushort)0x0201).AsByte();
        var planes01Times4 = Vector512.Create((ushort)0x0804).AsByte();
        var low4 = Vector512.Create((short)0x0F);
        var ya = y;
        var yb = y + yStride;
        var yc = y + 2 * yStride;
        var yd = y + 3 * yStride;
        Vector512<float>.Zero.Store(ya);
        Vector512<float>.Zero.Store(ya + 16);
        Vector512<float>.Zero.Store(yb);
        Vector512<float>.Zero.Store(yb + 16);
        Vector512<float>.Zero.Store(yc);
        Vector512<float>.Zero.Store(yc + 16);
        Vector512<float>.Zero.Store(yd);
        Vector512<float>.Zero.Store(yd + 16);
        for (var sb = 0; sb < superBlocks; sb++)
        {
            Vector512<int> ea0 = default, ea1 = default, ca0 = default, ca1 = default;
            Vector512<int> eb0 = default, eb1 = default, cb0 = default, cb1 = default;
            Vector512<int> ec0 = default, ec1 = default, cc0 = default, cc1 = default;
            Vector512<int> ed0 = default, ed1 = default, cd0 = default, cd1 = default;
            for (var p = 0; p < 8; p++, w += 320, sidecar += Q2_KPairRecord)
            {
                var v0 = Vector512.Load(w);
                var v1 = Vector512.Load(w + 64);
                var lowA0 = (v0 & nibble).AsSByte();
                var highA0 = HighNibbles(v0).AsSByte();
                var lowA1 = (v1 & nibble).AsSByte();
                var highA1 = HighNibbles(v1).AsSByte();
                v0 = Vector512.Load(w + 128);
                v1 = Vector512.Load(w + 192);
                var lowB0 = (v0 & nibble).AsSByte();
                var highB0 = HighNibbles(v0).AsSByte();
                var lowB1 = (v1 & nibble).AsSByte();
                var highB1 = HighNibbles(v1).AsSByte();
                var scales = Vector512.Load(w + 256);
                var sa = Avx512BW.ConvertToVector512Int16(scales.GetLower());
                var sbv = Avx512BW.ConvertToVector512Int16(scales.GetUpper());
                var scA = sa & low4;
                var scB = sbv & low4;
                var scLow = Avx512BW.UnpackLow(scA, scB);
                var scHigh = Avx512BW.UnpackHigh(scA, scB);
                var mA = Avx512BW.ShiftRightLogical(sa, 4);
                var mB = Avx512BW.ShiftRightLogical(sbv, 4);
                var mLow = Avx512BW.UnpackLow(mA, mB);
                var mHigh = Avx512BW.UnpackHigh(mA, mB);
                PairToken(lowA0, highA0, lowA1, highA1, lowB0, highB0, lowB1, highB1, sidecar, planes01, planes01Times4, scLow, scHigh, mLow, mHigh,
                    ref ea0, ref ea1, ref ca0, ref ca1);
                PairToken(lowA0, highA0, lowA1, highA1, lowB0, highB0, lowB1, highB1, sidecar + stride, planes01, planes01Times4, scLow, scHigh,
                    mLow, mHigh, ref eb0, ref eb1, ref cb0, ref cb1);
                PairToken(lowA0, highA0, lowA1, highA1, lowB0, highB0, lowB1, highB1, sidecar + 2 * stride, planes01, planes01Times4, scLow, scHigh,
                    mLow, mHigh, ref ec0, ref ec1, ref cc0, ref cc1);
                PairToken(lowA0, highA0, lowA1, highA1, lowB0, highB0, lowB1, highB1, sidecar + 3 * stride, planes01, planes01Times4, scLow, scHigh,
                    mLow, mHigh, ref ed0, ref ed1, ref cd0, ref cd1);
            }
            var d0 = HalfToSingle(Vector256.Load((short*)w));
            var d1 = HalfToSingle(Vector256.Load((short*)(w + 32)));
            var dmin0 = HalfToSingle(Vector256.Load((short*)(w + 64)));
            var dmin1 = HalfToSingle(Vector256.Load((short*)(w + 96)));
            SuperBlockEpilogue(ea0, ea1, ca0, ca1, (float*)sidecar, d0, d1, dmin0, dmin1, ya);
            SuperBlockEpilogue(eb0, eb1, cb0, cb1, (float*)(sidecar + stride), d0, d1, dmin0, dmin1, yb);
            SuperBlockEpilogue(ec0, ec1, cc0, cc1, (float*)(sidecar + 2 * stride), d0, d1, dmin0, dmin1, yc);
            SuperBlockEpilogue(ed0, ed1, cd0, cd1, (float*)(sidecar + 3 * stride), d0, d1, dmin0, dmin1, yd);
            w += 128;
            sidecar += 16;
        }
        RowOrder(ya);
        RowOrder(yb);
        RowOrder(yc);
        RowOrder(yd);
    }

    /// <summary>One token's share of a Q2_K sub-block pair in <see cref="Q2_KChunk"/>, on nibbles and scale unpacks computed once.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void PairToken(Vector512<sbyte> lowA0, Vector512<sbyte> highA0, Vector512<sbyte> lowA1, Vector512<sbyte> highA1,
        Vector512<sbyte> lowB0, Vector512<sbyte> highB0, Vector512<sbyte> lowB1, Vector512<sbyte> highB1, byte* tables, Vector512<byte> planes01,
        Vector512<byte> planes01Times4, Vector512<short> scLow, Vector512<short> scHigh, Vector512<short> mLow, Vector512<short> mHigh,
        ref Vector512<int> e0, ref Vector512<int> e1, ref Vector512<int> c0, ref Vector512<int> c1)
    {
        var sums = (short*)(tables + 256);
        var accA = SubBlockNibbles(lowA0, highA0, lowA1, highA1, tables, planes01, planes01Times4) + Vector512.Create(sums[0]);
        var accB = SubBlockNibbles(lowB0, highB0, lowB1, highB1, tables + 128, planes01, planes01Times4) + Vector512.Create(sums[1]);
        e0 += Avx512BW.MultiplyAddAdjacent(Avx512BW.UnpackLow(accA, accB), scLow);
        e1 += Avx512BW.MultiplyAddAdjacent(Avx512BW.UnpackHigh(accA, accB), scHigh);
        var mins = Vector512.Create(*(int*)(sums + 2)).AsInt16();
        c0 += Avx512BW.MultiplyAddAdjacent(mLow, mins);
        c1 += Avx512BW.MultiplyAddAdjacent(mHigh, mins);
    }

    /// <summary><see cref="SubBlock"/> with the nibbles already split.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<short> SubBlockNibbles(Vector512<sbyte> low0, Vector512<sbyte> high0, Vector512<sbyte> low1, Vector512<sbyte> high1,
        byte* tables, Vector512<byte> planes01, Vector512<byte> planes01Times4)
    {
        var main = Avx512BW.MultiplyAddAdjacent(planes01Times4, Avx512BW.Shuffle(Table(tables), low0))
            + Avx512BW.MultiplyAddAdjacent(planes01Times4, Avx512BW.Shuffle(Table(tables + 32), high0))
            + Avx512BW.MultiplyAddAdjacent(planes01Times4, Avx512BW.Shuffle(Table(tables + 64), low1))
            + Avx512BW.MultiplyAddAdjacent(planes01Times4, Avx512BW.Shuffle(Table(tables + 96), high1));
        var rest = Avx512BW.Shuffle(Table(tables + 16), low0) + Avx512BW.Shuffle(Table(tables + 48), high0)
            + Avx512BW.Shuffle(Table(tables + 80), low1) + Avx512BW.Shuffle(Table(tables + 112), high1);
        return main + Avx512BW.MultiplyAddAdjacent(planes01, rest);
    }

    /// <summary>The f32 end of a super-block in <see cref="Q2_KChunk"/>, operation for operation, with the row sums kept in y.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void SuperBlockEpilogue(Vector512<int> e0, Vector512<int> e1, Vector512<int> c0, Vector512<int> c1, float* f,
        Vector512<float> d0, Vector512<float> d1, Vector512<float> dmin0, Vector512<float> dmin1, float* y)
    {
        var halfS = Vector512.Create(f[0]);
        var s = Vector512.Create(f[1]);
        var y0 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(e0) * halfS, d0, Vector512.Load(y));
        var y1 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(e1) * halfS, d1, Vector512.Load(y + 16));
        Avx512F.FusedMultiplyAddNegated(Avx512F.ConvertToVector512Single(c0) * s, dmin0, y0).Store(y);
        Avx512F.FusedMultiplyAddNegated(Avx512F.ConvertToVector512Single(c1) * s, dmin1, y1).Store(y + 16);
    }

    /// <summary>The closing permute of <see cref="Q2_KChunk"/>, in place.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void RowOrder(float* y)
    {
        var y0 = Vector512.Load(y);
        var y1 = Vector512.Load(y + 16);
        Avx512F.PermuteVar16x32x2(y0, Vector512.Create(0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23), y1).Store(y);
        Avx512F.PermuteVar16x32x2(y0, Vector512.Create(8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31), y1).Store(y + 16);
    }

    /// <summary><see cref="Lookup"/> on one token's table pair, broadcast from its state, with the nibbles already split.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void LookupToken(Vector512<sbyte> lowNibbles, Vector512<sbyte> highNibbles, byte* table, Vector512<byte> planes01,
        Vector512<byte> planes23, ref Vector512<short> acc, ref Vector512<sbyte> lowL, ref Vector512<sbyte> highL)
    {
        var high = Table(table);
        var low = Table(table + 16);
        acc += Avx512BW.MultiplyAddAdjacent(planes01, Avx512BW.Shuffle(high, lowNibbles))
            + Avx512BW.MultiplyAddAdjacent(planes23, Avx512BW.Shuffle(high, highNibbles));
        lowL += Avx512BW.Shuffle(low, lowNibbles);
        highL += Avx512BW.Shuffle(low, highNibbles);
    }

    /// <summary>The f32 epilogue of <see cref="Q4Chunks"/> for one token's 32 rows, operation for operation.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Epilogue(Vector512<short> acc, Vector512<sbyte> lowL, Vector512<sbyte> highL, float* coefficients, Vector512<byte> planes01,
        Vector512<byte> planes23, Vector512<float> d0, Vector512<float> d1, Vector512<float> m0, Vector512<float> m1, bool hasMin, float* yc)
    {
        var four = Vector512.Create(4f);
        var a = Vector512.Create(coefficients[0]);
        var bias = Vector512.Create(coefficients[1]);
        var rest = Avx512BW.MultiplyAddAdjacent(planes01, lowL) + Avx512BW.MultiplyAddAdjacent(planes23, highL);
        var lower = Avx512F.FusedMultiplyAdd(Avx512F.FusedMultiplyAdd(ToSingle(acc.GetLower()), four, ToSingle(rest.GetLower())), a, bias);
        var upper = Avx512F.FusedMultiplyAdd(Avx512F.FusedMultiplyAdd(ToSingle(acc.GetUpper()), four, ToSingle(rest.GetUpper())), a, bias);
        var y0 = Avx512F.FusedMultiplyAdd(lower, d0, Vector512.Load(yc));
        var y1 = Avx512F.FusedMultiplyAdd(upper, d1, Vector512.Load(yc + 16));
        if (hasMin)
        {
            var sum = Vector512.Create(coefficients[2]);
            y0 = Avx512F.FusedMultiplyAdd(m0, sum, y0);
            y1 = Avx512F.FusedMultiplyAdd(m1, sum, y1);
        }
        y0.Store(yc);
        y1.Store(yc + 16);
    }
}
