using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Lutra.Core.Kernels;

/// <summary>
/// Four tokens at a time over one Q4_0/Q4_1 weight tile: each index vector is loaded and split into nibbles once and
/// looked up in every token's tables (broadcast from the state, since a token's 8 table pairs no longer fit in
/// registers next to the others'); the f16 scales are converted once per chunk. Per token the integer sums and
/// the f32 epilogue are those of MatVec, in the same order, so the results are bit-identical to it. Q2_K keeps
/// the per-token MatVec. The 5-trit ternary kernel has no batched form: three layouts of it (64 rows × 8 tokens,
/// 128 rows × 4 tokens, and planes summed without the unpack) measured 0.66-1.06x the per-token loop, whose
/// weight tile already stays in L2 across the batch; its cost is the per-token byte permutes.
/// </summary>
public sealed unsafe partial class BitSerialLutAvx512
{
    public override void MatMat(byte* weights, long rowBytes, int rows, byte* states, int stateStride, int tokens, int n, float* y, long yStride)
    {
        if (WeightType == Quants.GgmlType.Q2_K)
        {
            base.MatMat(weights, rowBytes, rows, states, stateStride, tokens, n, y, yStride);
            return;
        }
        // Groups of 4 measured 4-9 % faster than 4 MatVec calls on one 8192x2048 matrix; groups of 2 measured no
        // faster (0.97-1.01x) and 8 tokens' accumulators would not fit in the 32 registers, so the rest go one by one.
        var t = 0;
        for (; tokens - t >= Group; t += Group)
            Batch(weights, rowBytes, rows, states + (long)t * stateStride, stateStride, n, y + t * yStride, yStride);
        for (; t < tokens; t++)
            MatVec(weights, rowBytes, rows, states + (long)t * stateStride, n, y + t * yStride);
    }

    private const int Group = 4;

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

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
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
