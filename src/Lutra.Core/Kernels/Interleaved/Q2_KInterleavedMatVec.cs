using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Lutra.Core.Quants;
using static Lutra.Core.Kernels.InterleavedSteps;

namespace Lutra.Core.Kernels;

/// <summary>
/// Q2_K weights · Q8_K activations over 16-row interleaved tiles (AVX-512 BW and GFNI; see <see cref="InterleavedSteps"/>).
/// <para>
/// Tile super-block (1344 bytes = 21 cache lines, 16 GGUF super-blocks' worth): the 16 rows' f16 d, their f16 dmin,
/// then the 16 scale/min bytes as four 64-byte groups (group g holds row r's bytes of sub-blocks 4g, 4g+2, 4g+1,
/// 4g+3 in int32 lane r, in that order, so that the mins of sub-blocks 4g, 4g+1 sit in the low bytes of the lane's
/// two int16 halves and pair with the adjacent activation sums bsums[4g], bsums[4g+1] as one broadcast int32), then
/// 16 quant groups of 64 bytes: group j holds qs bytes 4j..4j+3 of every row, row r in lane r.
/// </para>
/// <para>
/// A quant byte carries four 2-bit codes, of elements l, l+32, l+64, l+96 of its half. One load of a quant group
/// gives the four code planes with one instruction each: v&amp;3, v&amp;12 (the code times 4) and two GFNI affine
/// transforms moving bits 4-5 and 6-7 to bits 0-1 (~10 % faster in cache than a shift and two masks, same-process
/// A/B). Each plane is one vpmaddubsw against four broadcast activation bytes, and the four groups of a 16-element
/// sub-block add up in int16 (|Σ| ≤ 4·2·12·128 &lt; 2¹⁵). The times-4 plane is shifted back (exactly: every term
/// is a multiple of 4), then one vpmaddwd against the sub-block's scale, shuffled out of its scale group into both
/// int16 halves of each lane, gives sc·Σq·a in int32. The mins term Σ m_s·bsums[s] is eight vpmaddwd of the high
/// nibbles kept in place (16·m, shifted back at the end). The integer sums are the reference's and the float
/// arithmetic per super-block is the reference's, (d_a·d)·sumi − (d_a·dmin)·summ added in order, so every output
/// equals <see cref="QuantReference.Dot"/> bit for bit. Rows after the last whole tile keep the GGUF layout and
/// run through the reference dot product.
/// </para>
/// </summary>
public sealed unsafe class Q2_KInterleavedMatVec() : InterleavedTileMatVec(GgmlType.Q2_K, InstructionSet.Avx512, "AVX-512 BW 16-row interleaved")
{
    private const int SuperBlock = 256;
    private const int BlockBytes = 84;
    private const int TileBlockBytes = TileRows * BlockBytes;
    private const int DMinOffset = 2 * TileRows;
    private const int ScalesOffset = 4 * TileRows;
    private const int QuantsOffset = ScalesOffset + 16 * TileRows;
    private const int ActivationBlockBytes = 292;
    private const int BsumsOffset = 4 + SuperBlock;

    /// <summary>Prefetch distance into L2 over the tile stream (every one of its 21 lines per tile super-block), as Q4_K's; each line goes into L1 nearer (<see cref="InterleavedSteps.PrefetchTwoStage"/>).</summary>
    private const int PrefetchAhead = 8192;

    public static bool IsSupported => KernelIsa.IsSupported(InstructionSet.Avx512) && Gfni.V512.IsSupported;

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public override void PrepareActivations(float* x, int n, byte* state) => Q8_KKernels.QuantizeRowAvx512(x, state, n);

    /// <summary>Lane byte p of a scale group holds sub-block 4g + ScaleOrder[p].</summary>
    private static ReadOnlySpan<byte> ScaleOrder => [0, 2, 1, 3];

    /// <summary>
    /// Rewrites whole tiles into the tile layout and copies the rows after them. False, writing nothing, when the
    /// shape is not Q2_K's or a tile row has a non-finite d or dmin (the f16 conversion handles finite values only).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override bool TryPrepareWeights(byte* source, long rowBytes, int rows, int n, byte* destination)
    {
        if (n <= 0 || n % SuperBlock != 0 || rowBytes != (long)n / SuperBlock * BlockBytes)
            return false;
        var blocks = n / SuperBlock;
        var tiles = rows / TileRows;
        var tileBytes = TileRows * rowBytes;
        if (!FiniteScales(source + 80, rowBytes, tiles * TileRows, blocks, BlockBytes) || !FiniteScales(source + 82, rowBytes, tiles * TileRows, blocks, BlockBytes))
            return false;
        for (var tile = 0; tile < tiles; tile++)
        {
            var dst = destination + tile * tileBytes;
            for (var r = 0; r < TileRows; r++)
            {
                var row = source + (tile * TileRows + r) * rowBytes;
                for (var b = 0; b < blocks; b++)
                {
                    var block = row + b * BlockBytes;
                    var tileBlock = dst + b * TileBlockBytes;
                    ((ushort*)tileBlock)[r] = *(ushort*)(block + 80);
                    ((ushort*)(tileBlock + DMinOffset))[r] = *(ushort*)(block + 82);
                    for (var g = 0; g < 4; g++)
                        for (var p = 0; p < 4; p++)
                            tileBlock[ScalesOffset + QuantPosition(r, g) + p] = block[4 * g + ScaleOrder[p]];
                    for (var j = 0; j < 16; j++)
                        *(uint*)(tileBlock + QuantsOffset + QuantPosition(r, j)) = *(uint*)(block + 16 + 4 * j);
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

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void Tiles(byte* weights, long rowBytes, int tiles, byte* state, int blocks, float* y)
    {
        var planes = new CodePlanes();
        var pick0 = ScalePick(0);
        var pick1 = ScalePick(1);
        var pick2 = ScalePick(2);
        var pick3 = ScalePick(3);
        var nibbles = Vector512.Create((byte)0x0F);
        for (var tile = 0; tile < tiles; tile++)
        {
            var w = weights + tile * TileRows * rowBytes;
            var a = state;
            var acc = Vector512<float>.Zero;
            for (var b = 0; b < blocks; b++, w += TileBlockBytes, a += ActivationBlockBytes)
            {
                var ahead = w + PrefetchAhead;
                PrefetchTwoStage(ahead, PrefetchAhead);
                PrefetchTwoStage(ahead + 64, PrefetchAhead);
                PrefetchTwoStage(ahead + 128, PrefetchAhead);
                PrefetchTwoStage(ahead + 192, PrefetchAhead);
                PrefetchTwoStage(ahead + 256, PrefetchAhead);
                var scales0 = Vector512.Load(w + ScalesOffset) & nibbles;
                var scales1 = Vector512.Load(w + ScalesOffset + 64) & nibbles;
                var scales2 = Vector512.Load(w + ScalesOffset + 128) & nibbles;
                var scales3 = Vector512.Load(w + ScalesOffset + 192) & nibbles;
                var sumi = (Quarter(w, ahead, a, 0, planes, scales0, scales1, pick0, pick1)
                    + Quarter(w, ahead, a, 1, planes, scales0, scales1, pick2, pick3))
                    + (Quarter(w, ahead, a, 2, planes, scales2, scales3, pick0, pick1)
                    + Quarter(w, ahead, a, 3, planes, scales2, scales3, pick2, pick3));
                var summ = MinSums(w + ScalesOffset, (int*)(a + BsumsOffset));
                var da = Vector512.Create(*(float*)a);
                acc += da * HalfToSingle512(w) * Vector512.ConvertToSingle(sumi) - da * HalfToSingle512(w + DMinOffset) * Vector512.ConvertToSingle(summ);
            }
            acc.Store(y + tile * TileRows);
        }
    }

    /// <summary>The masks and GFNI matrices that split a quant byte into its four code planes (planes 1 and 3 times 4, 2 and 3 by GFNI).</summary>
    private readonly struct CodePlanes()
    {
        public readonly Vector512<byte> Low = Vector512.Create((byte)0x03);
        public readonly Vector512<byte> High = Vector512.Create((byte)0x0C);
        public readonly Vector512<byte> Bits45 = Vector512.Create(0x1020_0000_0000_0000ul).AsByte();
        public readonly Vector512<byte> Bits67 = Vector512.Create(0x4080_0000_0000_0000ul).AsByte();
    }

    /// <summary>
    /// Σ sc·q·a for 16 rows over the four quant groups of quarter <paramref name="quarter"/> (h = quarter / 2,
    /// c = quarter % 2: qs bytes 16c..16c+15 of half h, sub-blocks 8h + 2k + c for plane k), prefetching its lines
    /// <see cref="PrefetchAhead"/> ahead.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> Quarter(byte* w, byte* ahead, byte* a, int quarter, CodePlanes planes,
        Vector512<byte> scalesLow, Vector512<byte> scalesHigh, Vector512<byte> pickEven, Vector512<byte> pickOdd)
    {
        var q = w + QuantsOffset + 256 * quarter;
        var x = a + 4 + 128 * (quarter >> 1) + 16 * (quarter & 1);
        PrefetchTwoStage(ahead + QuantsOffset + 256 * quarter, PrefetchAhead);
        PrefetchTwoStage(ahead + QuantsOffset + 256 * quarter + 64, PrefetchAhead);
        PrefetchTwoStage(ahead + QuantsOffset + 256 * quarter + 128, PrefetchAhead);
        PrefetchTwoStage(ahead + QuantsOffset + 256 * quarter + 192, PrefetchAhead);
        var v0 = Vector512.Load(q);
        var v1 = Vector512.Load(q + 64);
        var v2 = Vector512.Load(q + 128);
        var v3 = Vector512.Load(q + 192);
        var plane0 = (Avx512BW.MultiplyAddAdjacent(v0 & planes.Low, Broadcast512(x)) + Avx512BW.MultiplyAddAdjacent(v1 & planes.Low, Broadcast512(x + 4)))
            + (Avx512BW.MultiplyAddAdjacent(v2 & planes.Low, Broadcast512(x + 8)) + Avx512BW.MultiplyAddAdjacent(v3 & planes.Low, Broadcast512(x + 12)));
        var plane1 = (Avx512BW.MultiplyAddAdjacent(v0 & planes.High, Broadcast512(x + 32)) + Avx512BW.MultiplyAddAdjacent(v1 & planes.High, Broadcast512(x + 36)))
            + (Avx512BW.MultiplyAddAdjacent(v2 & planes.High, Broadcast512(x + 40)) + Avx512BW.MultiplyAddAdjacent(v3 & planes.High, Broadcast512(x + 44)));
        var plane2 = (Avx512BW.MultiplyAddAdjacent(Bits(v0, planes.Bits45), Broadcast512(x + 64)) + Avx512BW.MultiplyAddAdjacent(Bits(v1, planes.Bits45), Broadcast512(x + 68)))
            + (Avx512BW.MultiplyAddAdjacent(Bits(v2, planes.Bits45), Broadcast512(x + 72)) + Avx512BW.MultiplyAddAdjacent(Bits(v3, planes.Bits45), Broadcast512(x + 76)));
        var plane3 = (Avx512BW.MultiplyAddAdjacent(Bits(v0, planes.Bits67), Broadcast512(x + 96)) + Avx512BW.MultiplyAddAdjacent(Bits(v1, planes.Bits67), Broadcast512(x + 100)))
            + (Avx512BW.MultiplyAddAdjacent(Bits(v2, planes.Bits67), Broadcast512(x + 104)) + Avx512BW.MultiplyAddAdjacent(Bits(v3, planes.Bits67), Broadcast512(x + 108)));
        return Drain(plane0, plane1, plane2, plane3, scalesLow, scalesHigh, pickEven, pickOdd);
    }

    /// <summary>Two bits of every byte, moved to bits 0-1 by the GFNI matrix <paramref name="matrix"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<byte> Bits(Vector512<byte> v, Vector512<byte> matrix) => Gfni.V512.GaloisFieldAffineTransform(v, matrix, 0);

    /// <summary>
    /// Σ_k sc_k·plane sum k in int32: plane 1 carries four times its codes and is shifted back first (exactly: every
    /// term is a multiple of 4); plane k's scale is byte <c>k % 2</c> (or 2 + it) of the low (k &lt; 2) or high scale
    /// group's lanes.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> Drain(Vector512<short> plane0, Vector512<short> plane1, Vector512<short> plane2, Vector512<short> plane3,
        Vector512<byte> scalesLow, Vector512<byte> scalesHigh, Vector512<byte> pickEven, Vector512<byte> pickOdd) =>
        (Avx512BW.MultiplyAddAdjacent(plane0, Avx512BW.Shuffle(scalesLow, pickEven).AsInt16())
        + Avx512BW.MultiplyAddAdjacent(Avx512BW.ShiftRightArithmetic(plane1, 2), Avx512BW.Shuffle(scalesLow, pickOdd).AsInt16()))
        + (Avx512BW.MultiplyAddAdjacent(plane2, Avx512BW.Shuffle(scalesHigh, pickEven).AsInt16())
        + Avx512BW.MultiplyAddAdjacent(plane3, Avx512BW.Shuffle(scalesHigh, pickOdd).AsInt16()));

    /// <summary>
    /// GEMM tile: four tokens × 16 rows; each quant group's code planes are split once for the four tokens. The same
    /// integer sums and float order per token as <see cref="Tiles"/>, so the same bits.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void TilesFourTokens(byte* weights, long rowBytes, int tiles, byte* s0, int stateStride, int blocks, float* y, long yStride)
    {
        var s1 = s0 + stateStride;
        var s2 = s1 + stateStride;
        var s3 = s2 + stateStride;
        var planes = new CodePlanes();
        var (low, high, bits45, bits67) = (planes.Low, planes.High, planes.Bits45, planes.Bits67);
        var pick0 = ScalePick(0);
        var pick1 = ScalePick(1);
        var pick2 = ScalePick(2);
        var pick3 = ScalePick(3);
        for (var tile = 0; tile < tiles; tile++)
        {
            var w = weights + tile * TileRows * rowBytes;
            Vector512<float> c0 = default, c1 = default, c2 = default, c3 = default;
            for (var b = 0; b < blocks; b++, w += TileBlockBytes)
            {
                Vector512<int> sumi0 = default, sumi1 = default, sumi2 = default, sumi3 = default;
                var o = b * ActivationBlockBytes + 4;
                for (var quarter = 0; quarter < 4; quarter++)
                {
                    var q = w + QuantsOffset + 256 * quarter;
                    var ao = o + 128 * (quarter >> 1) + 16 * (quarter & 1);
                    Vector512<short> a00 = default, a01 = default, a02 = default, a03 = default;
                    Vector512<short> a10 = default, a11 = default, a12 = default, a13 = default;
                    Vector512<short> a20 = default, a21 = default, a22 = default, a23 = default;
                    Vector512<short> a30 = default, a31 = default, a32 = default, a33 = default;
                    for (var i = 0; i < 4; i++, ao += 4)
                    {
                        var v = Vector512.Load(q + 64 * i);
                        var plane0 = v & low;
                        var plane1 = v & high;
                        var plane2 = Bits(v, bits45);
                        var plane3 = Bits(v, bits67);
                        a00 += Avx512BW.MultiplyAddAdjacent(plane0, Broadcast512(s0 + ao));
                        a01 += Avx512BW.MultiplyAddAdjacent(plane1, Broadcast512(s0 + ao + 32));
                        a02 += Avx512BW.MultiplyAddAdjacent(plane2, Broadcast512(s0 + ao + 64));
                        a03 += Avx512BW.MultiplyAddAdjacent(plane3, Broadcast512(s0 + ao + 96));
                        a10 += Avx512BW.MultiplyAddAdjacent(plane0, Broadcast512(s1 + ao));
                        a11 += Avx512BW.MultiplyAddAdjacent(plane1, Broadcast512(s1 + ao + 32));
                        a12 += Avx512BW.MultiplyAddAdjacent(plane2, Broadcast512(s1 + ao + 64));
                        a13 += Avx512BW.MultiplyAddAdjacent(plane3, Broadcast512(s1 + ao + 96));
                        a20 += Avx512BW.MultiplyAddAdjacent(plane0, Broadcast512(s2 + ao));
                        a21 += Avx512BW.MultiplyAddAdjacent(plane1, Broadcast512(s2 + ao + 32));
                        a22 += Avx512BW.MultiplyAddAdjacent(plane2, Broadcast512(s2 + ao + 64));
                        a23 += Avx512BW.MultiplyAddAdjacent(plane3, Broadcast512(s2 + ao + 96));
                        a30 += Avx512BW.MultiplyAddAdjacent(plane0, Broadcast512(s3 + ao));
                        a31 += Avx512BW.MultiplyAddAdjacent(plane1, Broadcast512(s3 + ao + 32));
                        a32 += Avx512BW.MultiplyAddAdjacent(plane2, Broadcast512(s3 + ao + 64));
                        a33 += Avx512BW.MultiplyAddAdjacent(plane3, Broadcast512(s3 + ao + 96));
                    }
                    var nibbles = Vector512.Create((byte)0x0F);
                    var scalesLow = Vector512.Load(w + ScalesOffset + 128 * (quarter >> 1)) & nibbles;
                    var scalesHigh = Vector512.Load(w + ScalesOffset + 128 * (quarter >> 1) + 64) & nibbles;
                    var pickEven = (quarter & 1) == 0 ? pick0 : pick2;
                    var pickOdd = (quarter & 1) == 0 ? pick1 : pick3;
                    sumi0 += Drain(a00, a01, a02, a03, scalesLow, scalesHigh, pickEven, pickOdd);
                    sumi1 += Drain(a10, a11, a12, a13, scalesLow, scalesHigh, pickEven, pickOdd);
                    sumi2 += Drain(a20, a21, a22, a23, scalesLow, scalesHigh, pickEven, pickOdd);
                    sumi3 += Drain(a30, a31, a32, a33, scalesLow, scalesHigh, pickEven, pickOdd);
                }
                var dw = HalfToSingle512(w);
                var dmin = HalfToSingle512(w + DMinOffset);
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

    /// <summary>acc + (d_a·d)·sumi − (d_a·dmin)·summ for one token, the mins term from the tile block's scale groups.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Combine(Vector512<float> acc, byte* w, byte* a, Vector512<int> sumi, Vector512<float> dw, Vector512<float> dmin)
    {
        var summ = MinSums(w + ScalesOffset, (int*)(a + BsumsOffset));
        var da = Vector512.Create(*(float*)a);
        return acc + (da * dw * Vector512.ConvertToSingle(sumi) - da * dmin * Vector512.ConvertToSingle(summ));
    }

    /// <summary>
    /// Σ_s m_s·bsums[s] for 16 rows: per scale group, the high nibbles of lane bytes 0 and 2 (sub-blocks 4g, 4g+1)
    /// and of bytes 1 and 3 (4g+2, 4g+3), each as 16·m in an int16 half, against a broadcast pair of adjacent bsums.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> MinSums(byte* scaleGroups, int* bsumPairs)
    {
        var keep = Vector512.Create((ushort)0xF0);
        var sum = MinPairs(Vector512.Load((ushort*)scaleGroups), bsumPairs, keep)
            + MinPairs(Vector512.Load((ushort*)(scaleGroups + 64)), bsumPairs + 2, keep)
            + (MinPairs(Vector512.Load((ushort*)(scaleGroups + 128)), bsumPairs + 4, keep)
            + MinPairs(Vector512.Load((ushort*)(scaleGroups + 192)), bsumPairs + 6, keep));
        return Vector512.ShiftRightArithmetic(sum, 4);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> MinPairs(Vector512<ushort> group, int* bsumPairs, Vector512<ushort> keep) =>
        Avx512BW.MultiplyAddAdjacent((group & keep).AsInt16(), Vector512.Create(bsumPairs[0]).AsInt16())
        + Avx512BW.MultiplyAddAdjacent((Vector512.ShiftRightLogical(group, 8) & keep).AsInt16(), Vector512.Create(bsumPairs[1]).AsInt16());

    /// <summary>
    /// vpshufb control taking lane byte <paramref name="position"/> of each int32 lane into the low byte of both
    /// its int16 halves and zeroing the high bytes (the index is within each 128-bit lane).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<byte> ScalePick(int position)
    {
        var p = 0x8000_8000u | (uint)position * 0x0001_0001u;
        return Vector512.Create(p, p + 0x0004_0004u, p + 0x0008_0008u, p + 0x000C_000Cu, p, p + 0x0004_0004u, p + 0x0008_0008u, p + 0x000C_000Cu,
            p, p + 0x0004_0004u, p + 0x0008_0008u, p + 0x000C_000Cu, p, p + 0x0004_0004u, p + 0x0008_0008u, p + 0x000C_000Cu).AsByte();
    }
}
