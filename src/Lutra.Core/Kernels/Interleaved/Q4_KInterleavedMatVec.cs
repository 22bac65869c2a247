using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Lutra.Core.Quants;
using static Lutra.Core.Kernels.InterleavedSteps;

namespace Lutra.Core.Kernels;

/// <summary>
/// Q4_K weights · Q8_K activations over 16-row interleaved tiles (AVX-512 BW; see <see cref="InterleavedSteps"/>).
/// <para>
/// Tile super-block (2304 bytes, 16 GGUF super-blocks' worth): the 16 rows' f16 d, their f16 dmin, then the
/// 12 packed scale bytes as three 64-byte groups (group g holds scale bytes 4g..4g+3 of row r in int32 lane r),
/// then 32 quant groups of 64 bytes: group j holds quant bytes 4j..4j+3 of every row, row r in lane r. So the
/// 6-bit scales and mins of all 16 rows unpack with a few whole-vector shifts and masks, and each quant load
/// serves 16 rows against one broadcast of four activation bytes.
/// </para>
/// <para>
/// Per sub-block the vpmaddubsw pairs of 8 groups are summed in int16 (|Σ| ≤ 8·2·15·128 &lt; 2¹⁵), and one
/// vpmaddwd against the row's scale (duplicated in both int16 halves of its lane) gives sc·Σq·a in int32. The
/// mins term Σ m_j·(bsums[2j] + bsums[2j+1]) is four vpmaddwd. Exact: the integer sums are the reference's and
/// the float arithmetic per super-block is the reference's, (d·d_a)·sumi − (dmin·d_a)·summ added in order, so
/// every output equals <see cref="QuantReference.Dot"/> bit for bit. Rows after the last whole tile keep the
/// GGUF layout and run through the reference dot product.
/// </para>
/// </summary>
public sealed unsafe class Q4_KInterleavedMatVec() : InterleavedTileMatVec(GgmlType.Q4_K, InstructionSet.Avx512, "AVX-512 BW 16-row interleaved")
{
    private const int SuperBlock = 256;
    private const int BlockBytes = 144;
    private const int TileBlockBytes = TileRows * BlockBytes;
    private const int ScalesOffset = 4 * TileRows;
    private const int QuantsOffset = ScalesOffset + 12 * TileRows;
    private const int ActivationBlockBytes = 292;
    private const int BsumsOffset = 4 + SuperBlock;

    /// <summary>
    /// Prefetch distance (into L2, as <see cref="InterleavedSteps.PrefetchDistance"/> says why) over the tile stream (every cache line of it: the four header lines of each
    /// tile super-block, d/dmin/scales, as well as the quants): twice the Q4_0/Q8_0 one. Measured with `bench
    /// --kernels Q4_K` (4096 columns, 3 runs each, quants only): none ~45 %, 2 KiB ~68 %, 4 KiB ~75 %, 8 KiB ~85 %,
    /// 16 KiB ~80 % of the probe; prefetching the header lines too lifted 8 KiB to 83-98 %.
    /// </summary>
    private const int QuantPrefetchDistance = 8192;

    public static bool IsSupported => KernelIsa.IsSupported(InstructionSet.Avx512);

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public override void PrepareActivations(float* x, int n, byte* state) => Q8_KKernels.QuantizeRowAvx512(x, state, n);

    /// <summary>
    /// Rewrites whole tiles into the tile layout and copies the rows after them. False, writing nothing, when the
    /// shape is not Q4_K's or a tile row has a non-finite d or dmin (the f16 conversion handles finite values only).
    /// </summary>
    public override bool TryPrepareWeights(byte* source, long rowBytes, int rows, int n, byte* destination) =>
        TryRepackTiles(source, rowBytes, rows, n, destination, BlockBytes, highBitGroups: 0);

    /// <summary>
    /// The tile layout of Q4_K (<paramref name="highBitGroups"/> 0) or Q5_K (8: its 32 qh bytes, between the scales
    /// and the quants in both layouts): d, dmin, the scale groups, the qh groups, the quant groups of 16 rows each.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static bool TryRepackTiles(byte* source, long rowBytes, int rows, int n, byte* destination, int blockBytes, int highBitGroups)
    {
        if (n <= 0 || n % SuperBlock != 0 || rowBytes != (long)n / SuperBlock * blockBytes)
            return false;
        var blocks = n / SuperBlock;
        var tiles = rows / TileRows;
        var tileBytes = TileRows * rowBytes;
        var tileBlockBytes = TileRows * blockBytes;
        var quantsFrom = 16 + 4 * highBitGroups;
        var quantsTo = QuantsOffset + 4 * TileRows * highBitGroups;
        if (!FiniteScales(source, rowBytes, tiles * TileRows, blocks, blockBytes) || !FiniteScales(source + 2, rowBytes, tiles * TileRows, blocks, blockBytes))
            return false;
        for (var tile = 0; tile < tiles; tile++)
        {
            var dst = destination + tile * tileBytes;
            for (var r = 0; r < TileRows; r++)
            {
                var row = source + (tile * TileRows + r) * rowBytes;
                for (var b = 0; b < blocks; b++)
                {
                    var block = row + b * blockBytes;
                    var tileBlock = dst + b * tileBlockBytes;
                    ((ushort*)tileBlock)[r] = *(ushort*)block;
                    ((ushort*)tileBlock)[TileRows + r] = *(ushort*)(block + 2);
                    for (var g = 0; g < 3; g++)
                        *(uint*)(tileBlock + ScalesOffset + QuantPosition(r, g)) = *(uint*)(block + 4 + 4 * g);
                    for (var k = 0; k < highBitGroups; k++)
                        *(uint*)(tileBlock + QuantsOffset + QuantPosition(r, k)) = *(uint*)(block + 16 + 4 * k);
                    for (var j = 0; j < 32; j++)
                        *(uint*)(tileBlock + quantsTo + QuantPosition(r, j)) = *(uint*)(block + quantsFrom + 4 * j);
                }
            }
        }
        var tail = tiles * tileBytes;
        Buffer.MemoryCopy(source + tail, destination + tail, rows * rowBytes - tail, rows * rowBytes - tail);
        return true;
    }

    private protected override void WholeTiles(byte* weights, long rowBytes, int tiles, byte* state, int n, float* y) =>
        Tiles(weights, rowBytes, tiles, state, n / SuperBlock, y);

    private protected override void WholeTilesFourTokens(byte* weights, long rowBytes, int tiles, byte* s0, int stateStride, int n, float* y, long yStride) =>
        TilesFourTokens(weights, rowBytes, tiles, s0, stateStride, n / SuperBlock, y, yStride);

    /// <summary>
    /// GEMM tile: four tokens × 16 rows; each quant group's nibbles are split once for the four tokens. The same
    /// integer sums and float order per token as <see cref="Tiles"/>, so the same bits.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void TilesFourTokens(byte* weights, long rowBytes, int tiles, byte* s0, int stateStride, int blocks, float* y, long yStride)
    {
        var six = Vector512.Create(0x3F3F3F3Fu);
        var nibbles = Vector512.Create(0x0F0F0F0Fu);
        var tops = Vector512.Create(0x30303030u);
        var mask = Vector512.Create((byte)0x0F);
        var s1 = s0 + stateStride;
        var s2 = s1 + stateStride;
        var s3 = s2 + stateStride;
        for (var tile = 0; tile < tiles; tile++)
        {
            var w = weights + tile * TileRows * rowBytes;
            Vector512<float> c0 = default, c1 = default, c2 = default, c3 = default;
            for (var b = 0; b < blocks; b++, w += TileBlockBytes)
            {
                var u0 = Vector512.Load((uint*)(w + ScalesOffset));
                var u2 = Vector512.Load((uint*)(w + ScalesOffset + 128));
                var scalesLow = u0 & six;
                var scalesHigh = (u2 & nibbles) | (Vector512.ShiftRightLogical(u0, 2) & tops);
                Vector512<int> sumi0 = default, sumi1 = default, sumi2 = default, sumi3 = default;
                var o = b * ActivationBlockBytes + 4;
                for (var chunk = 0; chunk < 4; chunk++)
                {
                    var q = w + QuantsOffset + 512 * chunk;
                    Vector512<short> low0 = default, low1 = default, low2 = default, low3 = default;
                    Vector512<short> high0 = default, high1 = default, high2 = default, high3 = default;
                    for (var k = 0; k < 8; k++)
                    {
                        var v = Vector512.Load(q + 64 * k);
                        var lo = v & mask;
                        var hi = Vector512.ShiftRightLogical(v.AsUInt16(), 4).AsByte() & mask;
                        var ao = o + 64 * chunk + 4 * k;
                        low0 += Avx512BW.MultiplyAddAdjacent(lo, Broadcast512(s0 + ao));
                        high0 += Avx512BW.MultiplyAddAdjacent(hi, Broadcast512(s0 + ao + 32));
                        low1 += Avx512BW.MultiplyAddAdjacent(lo, Broadcast512(s1 + ao));
                        high1 += Avx512BW.MultiplyAddAdjacent(hi, Broadcast512(s1 + ao + 32));
                        low2 += Avx512BW.MultiplyAddAdjacent(lo, Broadcast512(s2 + ao));
                        high2 += Avx512BW.MultiplyAddAdjacent(hi, Broadcast512(s2 + ao + 32));
                        low3 += Avx512BW.MultiplyAddAdjacent(lo, Broadcast512(s3 + ao));
                        high3 += Avx512BW.MultiplyAddAdjacent(hi, Broadcast512(s3 + ao + 32));
                    }
                    var scales = chunk < 2 ? scalesLow : scalesHigh;
                    var lowScale = Pair(scales, 16 * (chunk & 1));
                    var highScale = Pair(scales, 16 * (chunk & 1) + 8);
                    sumi0 += Avx512BW.MultiplyAddAdjacent(low0, lowScale) + Avx512BW.MultiplyAddAdjacent(high0, highScale);
                    sumi1 += Avx512BW.MultiplyAddAdjacent(low1, lowScale) + Avx512BW.MultiplyAddAdjacent(high1, highScale);
                    sumi2 += Avx512BW.MultiplyAddAdjacent(low2, lowScale) + Avx512BW.MultiplyAddAdjacent(high2, highScale);
                    sumi3 += Avx512BW.MultiplyAddAdjacent(low3, lowScale) + Avx512BW.MultiplyAddAdjacent(high3, highScale);
                }
                var dw = HalfToSingle512(w);
                var dmin = HalfToSingle512(w + 2 * TileRows);
                var ab = b * ActivationBlockBytes;
                c0 = Combine(c0, w, s0 + ab, sumi0, dw, dmin);
                c1 = Combine(c1, w, s1 + ab, sumi1, dw, dmin);
                c2 = Combine(c2, w, s2 + ab, sumi2, dw, dmin);
                c3 = Combine(c3, w, s3 + ab, sumi3, dw, dmin);
            }
            var yt = y + tile * TileRows;
            c0.Store(yt);
            c1.Store(yt + yStride);
            c2.Store(yt + 2 * yStride);
            c3.Store(yt + 3 * yStride);
        }
    }

    /// <summary>acc + (d·d_a)·sumi − (dmin·d_a)·summ for one token, the mins term from the tile block's packed scale bytes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<float> Combine(Vector512<float> acc, byte* w, byte* a, Vector512<int> sumi, Vector512<float> dw, Vector512<float> dmin)
    {
        var u1 = Vector512.Load((uint*)(w + ScalesOffset + 64));
        var u2 = Vector512.Load((uint*)(w + ScalesOffset + 128));
        var summ = MinSums(u1, u2, (short*)(a + BsumsOffset));
        var da = Vector512.Create(*(float*)a);
        return acc + (dw * da * Vector512.ConvertToSingle(sumi) - dmin * da * Vector512.ConvertToSingle(summ));
    }

    /// <summary>Σ_j m_j·(bsums[2j] + bsums[2j+1]) for 16 rows, from the three packed scale groups.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<int> MinSums(Vector512<uint> u1, Vector512<uint> u2, short* bsums)
    {
        var evenBytes = Vector512.Create(0x00FF00FFu);
        var minsLow = u1 & Vector512.Create(0x3F3F3F3Fu);
        var minsHigh = (Vector512.ShiftRightLogical(u2, 4) & Vector512.Create(0x0F0F0F0Fu)) | (Vector512.ShiftRightLogical(u1, 2) & Vector512.Create(0x30303030u));
        return Avx512BW.MultiplyAddAdjacent((minsLow & evenBytes).AsInt16(), SumPair(bsums, 0, 2))
            + Avx512BW.MultiplyAddAdjacent((Vector512.ShiftRightLogical(minsLow, 8) & evenBytes).AsInt16(), SumPair(bsums, 1, 3))
            + Avx512BW.MultiplyAddAdjacent((minsHigh & evenBytes).AsInt16(), SumPair(bsums, 4, 6))
            + Avx512BW.MultiplyAddAdjacent((Vector512.ShiftRightLogical(minsHigh, 8) & evenBytes).AsInt16(), SumPair(bsums, 5, 7));
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void Tiles(byte* weights, long rowBytes, int tiles, byte* state, int blocks, float* y)
    {
        var six = Vector512.Create(0x3F3F3F3Fu);
        var nibbles = Vector512.Create(0x0F0F0F0Fu);
        var tops = Vector512.Create(0x30303030u);
        for (var tile = 0; tile < tiles; tile++)
        {
            var w = weights + tile * TileRows * rowBytes;
            var a = state;
            var acc = Vector512<float>.Zero;
            for (var b = 0; b < blocks; b++, w += TileBlockBytes, a += ActivationBlockBytes)
            {
                Sse.Prefetch1(w + QuantPrefetchDistance);
                Sse.Prefetch1(w + QuantPrefetchDistance + 64);
                Sse.Prefetch1(w + QuantPrefetchDistance + 128);
                Sse.Prefetch1(w + QuantPrefetchDistance + 192);
                var u0 = Vector512.Load((uint*)(w + ScalesOffset));
                var u1 = Vector512.Load((uint*)(w + ScalesOffset + 64));
                var u2 = Vector512.Load((uint*)(w + ScalesOffset + 128));
                var scalesLow = u0 & six;
                var scalesHigh = (u2 & nibbles) | (Vector512.ShiftRightLogical(u0, 2) & tops);
                var q = w + QuantsOffset;
                var sumi = Chunk(q, a + 4, Pair(scalesLow, 0), Pair(scalesLow, 8))
                    + Chunk(q + 512, a + 68, Pair(scalesLow, 16), Pair(scalesLow, 24))
                    + (Chunk(q + 1024, a + 132, Pair(scalesHigh, 0), Pair(scalesHigh, 8))
                    + Chunk(q + 1536, a + 196, Pair(scalesHigh, 16), Pair(scalesHigh, 24)));
                var summ = MinSums(u1, u2, (short*)(a + BsumsOffset));
                var da = Vector512.Create(*(float*)a);
                acc += HalfToSingle512(w) * da * Vector512.ConvertToSingle(sumi) - HalfToSingle512(w + 2 * TileRows) * da * Vector512.ConvertToSingle(summ);
            }
            acc.Store(y + tile * TileRows);
        }
    }

    /// <summary>Σ sc·q·a of one 64-element chunk (8 quant groups: low nibbles one sub-block, high nibbles the next) for 16 rows.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> Chunk(byte* q, byte* a, Vector512<short> lowScale, Vector512<short> highScale)
    {
        var (l0, h0) = Group(q, a);
        var (l1, h1) = Group(q + 64, a + 4);
        var (l2, h2) = Group(q + 128, a + 8);
        var (l3, h3) = Group(q + 192, a + 12);
        var (l4, h4) = Group(q + 256, a + 16);
        var (l5, h5) = Group(q + 320, a + 20);
        var (l6, h6) = Group(q + 384, a + 24);
        var (l7, h7) = Group(q + 448, a + 28);
        var low = ((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7));
        var high = ((h0 + h1) + (h2 + h3)) + ((h4 + h5) + (h6 + h7));
        return Avx512BW.MultiplyAddAdjacent(low, lowScale) + Avx512BW.MultiplyAddAdjacent(high, highScale);
    }

    /// <summary>One quant group's low- and high-nibble vpmaddubsw pairs for 16 rows (prefetching the stream ahead).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector512<short> Low, Vector512<short> High) Group(byte* q, byte* a)
    {
        var mask = Vector512.Create((byte)0x0F);
        var v = Vector512.Load(q);
        Sse.Prefetch1(q + QuantPrefetchDistance);
        return (Avx512BW.MultiplyAddAdjacent(v & mask, Broadcast512(a)),
            Avx512BW.MultiplyAddAdjacent(Vector512.ShiftRightLogical(v.AsUInt16(), 4).AsByte() & mask, Broadcast512(a + 32)));
    }

    /// <summary>Byte <paramref name="shift"/>/8 of each lane, in both int16 halves of the lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<short> Pair(Vector512<uint> packed, int shift)
    {
        var value = Vector512.ShiftRightLogical(packed, shift) & Vector512.Create(0xFFu);
        return (value | Vector512.ShiftLeft(value, 16)).AsInt16();
    }

    /// <summary>The activation sums of sub-blocks <paramref name="first"/> and <paramref name="second"/> as an int16 pair in every lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<short> SumPair(short* bsums, int first, int second) =>
        Vector512.Create((uint)(ushort)(bsums[2 * first] + bsums[2 * first + 1]) | ((uint)(bsums[2 * second] + bsums[2 * second + 1]) << 16)).AsInt16();
}
