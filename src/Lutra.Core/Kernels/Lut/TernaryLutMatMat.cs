using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Lutra.Core.Kernels;

/// <summary>
/// Several tokens over one weight tile (prefill, lut-kernels.md "batched LUT"): each 64-row index vector is loaded
/// and sign-split once and looked up in every token's tables, so the weight stream, its sign masks and the
/// negative-lookup counts are shared by the group. Per token the integer sums and the f32 epilogue are those of
/// <see cref="MatVec"/>, in the same order, so the results are bit-identical to running it per token.
/// </summary>
public abstract unsafe partial class TernaryLutMatVecAvx512
{
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void MatMat(byte* weights, long rowBytes, int rows, byte* states, int stateStride, int tokens, int n, float* y, long yStride)
    {
        var t = 0;
        for (; tokens - t >= 4; t += 4)
            Batch<FourTokens>(weights, rowBytes, rows, states + (long)t * stateStride, stateStride, n, y + t * yStride, yStride);
        if (tokens - t >= 2)
        {
            Batch<TwoTokens>(weights, rowBytes, rows, states + (long)t * stateStride, stateStride, n, y + t * yStride, yStride);
            t += 2;
        }
        if (t < tokens)
            MatVec(weights, rowBytes, rows, states + (long)t * stateStride, n, y + t * yStride);
    }

    private void Batch<TGroup>(byte* weights, long rowBytes, int rows, byte* states, int stateStride, int n, float* y, long yStride)
        where TGroup : struct, ILutTokenGroup
    {
        var blocks = n / SuperBlock;
        var tablesOffset = AlignUp(StandardActivationBytes(n));
        var tiles = rows / TileRows;
        for (var tile = 0; tile < tiles; tile++)
            TileBatch<TGroup>(weights + tile * TileRows * rowBytes, blocks, states, stateStride, tablesOffset, y + tile * TileRows, yStride);
        for (var k = 0; k < TGroup.Count; k++)
            for (var r = tiles * TileRows; r < rows; r++)
                y[k * yStride + r] = _rowDot(weights + r * rowBytes, states + (long)k * stateStride, n);
    }

    /// <summary>
    /// One 256-row tile for <typeparamref name="TGroup"/> tokens (at most 4), 128 rows at a time: a token costs four
    /// int16 accumulators (16 of the 32 registers for 4 tokens) and each token's tables are loaded once per 128
    /// rows. Per super-block the block's indices (13 KiB) stay in L1 across the two passes.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void TileBatch<TGroup>(byte* w, int blocks, byte* states, int stride, int tablesOffset, float* y, long yStride)
        where TGroup : struct, ILutTokenGroup
    {
        for (var k = 0; k < TGroup.Count; k++)
            for (var i = 0; i < TileRows; i += 16)
                Vector512<float>.Zero.Store(y + k * yStride + i);
        for (var b = 0; b < blocks; b++, w += TileRows * RepackedBlockBytes)
        {
            var tables = states + tablesOffset + b * Groups * TableBytes;
            var scales = (ushort*)(w + Groups * TileRows);
            for (var v = 0; v < Vectors; v += 2)
            {
                Vector512<short> a0 = default, b0 = default, c0 = default, d0 = default, a1 = default, b1 = default, c1 = default, d1 = default;
                Vector512<short> a2 = default, b2 = default, c2 = default, d2 = default, a3 = default, b3 = default, c3 = default, d3 = default;
                Vector512<sbyte> negA = default, negB = default;
                var idx = w + v * RowsPerVector;
                var t = tables;
                for (var g = 0; g < Groups; g++, idx += TileRows, t += TableBytes)
                {
                    if (v == 0)
                    {
                        Sse.Prefetch0(idx + PrefetchDistance);
                        Sse.Prefetch0(idx + PrefetchDistance + 64);
                        Sse.Prefetch0(idx + PrefetchDistance + 128);
                        Sse.Prefetch0(idx + PrefetchDistance + 192);
                    }
                    var indexA = Vector512.Load(idx);
                    var indexB = Vector512.Load(idx + RowsPerVector);
                    var signA = Vector512.LessThan(indexA.AsSByte(), Vector512<sbyte>.Zero).AsByte();
                    var signB = Vector512.LessThan(indexB.AsSByte(), Vector512<sbyte>.Zero).AsByte();
                    negA += signA.AsSByte();
                    negB += signB.AsSByte();
                    LookupToken(indexA, signA, indexB, signB, t, ref a0, ref b0, ref c0, ref d0);
                    LookupToken(indexA, signA, indexB, signB, t + stride, ref a1, ref b1, ref c1, ref d1);
                    if (TGroup.Count > 2)
                    {
                        LookupToken(indexA, signA, indexB, signB, t + 2 * stride, ref a2, ref b2, ref c2, ref d2);
                        LookupToken(indexA, signA, indexB, signB, t + 3 * stride, ref a3, ref b3, ref c3, ref d3);
                    }
                }
                var s = scales + v * RowsPerVector;
                var yv = y + v * RowsPerVector;
                var q8k = states + b * Q8_KBytes;
                FlushToken(a0, b0, c0, d0, negA, negB, s, *(float*)q8k, yv);
                FlushToken(a1, b1, c1, d1, negA, negB, s, *(float*)(q8k + stride), yv + yStride);
                if (TGroup.Count > 2)
                {
                    FlushToken(a2, b2, c2, d2, negA, negB, s, *(float*)(q8k + 2 * stride), yv + 2 * yStride);
                    FlushToken(a3, b3, c3, d3, negA, negB, s, *(float*)(q8k + 3 * stride), yv + 3 * yStride);
                }
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void FlushToken(Vector512<short> lowA, Vector512<short> highA, Vector512<short> lowB, Vector512<short> highB,
        Vector512<sbyte> negA, Vector512<sbyte> negB, ushort* scales, float da, float* y)
    {
        var scale = Vector512.Create(da);
        Flush(lowA, highA, negA, scales, scale, y);
        Flush(lowB, highB, negB, scales + RowsPerVector, scale, y + RowsPerVector);
    }

    /// <summary>One token's lookups of two 64-row index vectors (signs already split off), as <see cref="Lookup"/> does them.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void LookupToken(Vector512<byte> indexA, Vector512<byte> signA, Vector512<byte> indexB, Vector512<byte> signB, byte* table,
        ref Vector512<short> lowA, ref Vector512<short> highA, ref Vector512<short> lowB, ref Vector512<short> highB)
    {
        var loA = Vector512.Load(table);
        var loB = Vector512.Load(table + 64);
        var hiA = Vector512.Load(table + 128);
        var hiB = Vector512.Load(table + 192);
        LookupToken(indexA, signA, loA, loB, hiA, hiB, ref lowA, ref highA);
        LookupToken(indexB, signB, loA, loB, hiA, hiB, ref lowB, ref highB);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void LookupToken(Vector512<byte> idx, Vector512<byte> sign, Vector512<byte> loA, Vector512<byte> loB, Vector512<byte> hiA,
        Vector512<byte> hiB, ref Vector512<short> low, ref Vector512<short> high)
    {
        var lo = Avx512Vbmi.PermuteVar64x8x2(loA, idx, loB) ^ sign;
        var hi = Avx512Vbmi.PermuteVar64x8x2(hiA, idx, hiB) ^ sign;
        low += Avx512BW.UnpackLow(lo, hi).AsInt16();
        high += Avx512BW.UnpackHigh(lo, hi).AsInt16();
    }
}
