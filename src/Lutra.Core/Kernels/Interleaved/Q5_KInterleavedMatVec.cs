using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Lutra.Core.Quants;
using static Lutra.Core.Kernels.InterleavedSteps;

namespace Lutra.Core.Kernels;

/// <summary>
/// Q5_K weights · Q8_K activations over 16-row interleaved tiles (AVX-512 BW): <see cref="Q4_KInterleavedMatVec"/>'s
/// layout and arithmetic with the fifth bit of every code.
/// <para>
/// Tile super-block (2816 bytes, 16 GGUF super-blocks' worth): the 16 rows' f16 d, their f16 dmin, the 12 packed
/// scale bytes as three 64-byte groups, then the high bits as 8 groups of 64 bytes (group k holds qh bytes
/// 4k..4k+3 of row r in int32 lane r), then 32 quant groups of 64 bytes as in Q4_K. Element 64c + l of a
/// super-block takes bit 2c of qh[l % 32] (bit 2c + 1 for the high nibble), so the 64-element chunk c reads the
/// same 8 qh groups as every other chunk and moves its two bits to bit 4 with one 16-bit shift each.
/// </para>
/// <para>
/// Codes are ≤ 31, so a vpmaddubsw pair is at most 2·31·128 = 7936 and only four groups sum in int16 (|Σ| ≤ 31744
/// &lt; 2¹⁵) before vpmaddwd scales them into int32. The integer sums and the float order per super-block are the
/// reference's ((d·d_a)·sumi − (dmin·d_a)·summ), so every output equals <see cref="QuantReference.Dot"/> bit for
/// bit. Rows after the last whole tile keep the GGUF layout and run through the reference dot product.
/// </para>
/// </summary>
public sealed unsafe class Q5_KInterleavedMatVec() : InterleavedTileMatVec(GgmlType.Q5_K, InstructionSet.Avx512, "AVX-512 BW 16-row interleaved")
{
    private const int SuperBlock = 256;
    private const int BlockBytes = 176;
    private const int TileBlockBytes = TileRows * BlockBytes;
    private const int ScalesOffset = 4 * TileRows;
    private const int HighBitsOffset = ScalesOffset + 12 * TileRows;
    private const int QuantsOffset = HighBitsOffset + 32 * TileRows;
    private const int ActivationBlockBytes = 292;
    private const int BsumsOffset = 4 + SuperBlock;

    /// <summary>Into L2, 8 KiB ahead, as <see cref="Q4_KInterleavedMatVec"/> measured best; each chunk prefetches a quarter of the tile block.</summary>
    private const int PrefetchAhead = 8192;

    public static bool IsSupported => KernelIsa.IsSupported(InstructionSet.Avx512);

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public override void PrepareActivations(float* x, int n, byte* state) => Q8_KKernels.QuantizeRowAvx512(x, state, n);

    /// <summary>Q4_K's repacking with the 8 qh groups (<see cref="Q4_KInterleavedMatVec.TryRepackTiles"/>).</summary>
    public override bool TryPrepareWeights(byte* source, long rowBytes, int rows, int n, byte* destination) =>
        Q4_KInterleavedMatVec.TryRepackTiles(source, rowBytes, rows, n, destination, BlockBytes, highBitGroups: 8);

    private protected override void WholeTiles(byte* weights, long rowBytes, int tiles, byte* state, int n, float* y) =>
        Tiles(weights, rowBytes, tiles, state, n / SuperBlock, y);

    private protected override void WholeTilesFourTokens(byte* weights, long rowBytes, int tiles, byte* s0, int stateStride, int n, float* y, long yStride) =>
        TilesFourTokens(weights, rowBytes, tiles, s0, stateStride, n / SuperBlock, y, yStride);

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
                var u0 = Vector512.Load((uint*)(w + ScalesOffset));
                var u1 = Vector512.Load((uint*)(w + ScalesOffset + 64));
                var u2 = Vector512.Load((uint*)(w + ScalesOffset + 128));
                var scalesLow = u0 & six;
                var scalesHigh = (u2 & nibbles) | (Vector512.ShiftRightLogical(u0, 2) & tops);
                var q = w + QuantsOffset;
                var h = w + HighBitsOffset;
                var sumi = Chunk<Shift4, Shift3>(w, q, h, a + 4, Q4_KInterleavedMatVec.Pair(scalesLow, 0), Q4_KInterleavedMatVec.Pair(scalesLow, 8))
                    + Chunk<Shift2, Shift1>(w + 704, q + 512, h, a + 68, Q4_KInterleavedMatVec.Pair(scalesLow, 16), Q4_KInterleavedMatVec.Pair(scalesLow, 24))
                    + (Chunk<Shift0, ShiftMinus1>(w + 1408, q + 1024, h, a + 132, Q4_KInterleavedMatVec.Pair(scalesHigh, 0), Q4_KInterleavedMatVec.Pair(scalesHigh, 8))
                    + Chunk<ShiftMinus2, ShiftMinus3>(w + 2112, q + 1536, h, a + 196, Q4_KInterleavedMatVec.Pair(scalesHigh, 16), Q4_KInterleavedMatVec.Pair(scalesHigh, 24)));
                var summ = Q4_KInterleavedMatVec.MinSums(u1, u2, (short*)(a + BsumsOffset));
                var da = Vector512.Create(*(float*)a);
                acc += HalfToSingle512(w) * da * Vector512.ConvertToSingle(sumi) - HalfToSingle512(w + 2 * TileRows) * da * Vector512.ConvertToSingle(summ);
            }
            acc.Store(y + tile * TileRows);
        }
    }

    /// <summary>
    /// Σ sc·q·a of one 64-element chunk for 16 rows: 8 quant groups (low nibbles one sub-block, high nibbles the next)
    /// with their fifth bits from the 8 qh groups, four groups per int16 sum. Prefetches 11 lines, a quarter of a tile
    /// block, from <paramref name="prefetchFrom"/> on. Not inlined, and compiled optimized from the start: inlined four
    /// times, the chunks spent the JIT's inlining budget for <see cref="Tiles"/>, whose last helpers then stayed calls
    /// to unoptimized code until tiering recompiled them (the tuner measured the kernel 7-17x slower than it is).
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static Vector512<int> Chunk<TLow, THigh>(byte* prefetchFrom, byte* q, byte* h, byte* a, Vector512<short> lowScale, Vector512<short> highScale)
        where TLow : struct, IBitShift where THigh : struct, IBitShift
    {
        var p = prefetchFrom + PrefetchAhead;
        for (var line = 0; line < 11; line++)
            Sse.Prefetch1(p + 64 * line);
        var (l0, h0) = Group<TLow, THigh>(q, h, a);
        var (l1, h1) = Group<TLow, THigh>(q + 64, h + 64, a + 4);
        var (l2, h2) = Group<TLow, THigh>(q + 128, h + 128, a + 8);
        var (l3, h3) = Group<TLow, THigh>(q + 192, h + 192, a + 12);
        var (l4, h4) = Group<TLow, THigh>(q + 256, h + 256, a + 16);
        var (l5, h5) = Group<TLow, THigh>(q + 320, h + 320, a + 20);
        var (l6, h6) = Group<TLow, THigh>(q + 384, h + 384, a + 24);
        var (l7, h7) = Group<TLow, THigh>(q + 448, h + 448, a + 28);
        return (Avx512BW.MultiplyAddAdjacent((l0 + l1) + (l2 + l3), lowScale) + Avx512BW.MultiplyAddAdjacent((l4 + l5) + (l6 + l7), lowScale))
            + (Avx512BW.MultiplyAddAdjacent((h0 + h1) + (h2 + h3), highScale) + Avx512BW.MultiplyAddAdjacent((h4 + h5) + (h6 + h7), highScale));
    }

    /// <summary>One quant group's low- and high-nibble codes (fifth bit included) multiplied with their activations, for 16 rows.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    private static (Vector512<short> Low, Vector512<short> High) Group<TLow, THigh>(byte* q, byte* h, byte* a)
        where TLow : struct, IBitShift where THigh : struct, IBitShift
    {
        var (low, high) = Codes<TLow, THigh>(Vector512.Load(q), Vector512.Load(h));
        return (Avx512BW.MultiplyAddAdjacent(low, Broadcast512(a)), Avx512BW.MultiplyAddAdjacent(high, Broadcast512(a + 32)));
    }

    /// <summary>The 5-bit codes of a quant group: each nibble with its qh bit moved to bit 4.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    private static (Vector512<byte> Low, Vector512<byte> High) Codes<TLow, THigh>(Vector512<byte> v, Vector512<byte> h)
        where TLow : struct, IBitShift where THigh : struct, IBitShift
    {
        var nibble = Vector512.Create((byte)0x0F);
        var fifth = Vector512.Create((byte)0x10);
        // Bits 0-3 from the nibble, bit 4 from the shifted qh (masked to it): one vpternlog each.
        var low = Avx512F.TernaryLogic(v, TLow.ToBit4(h) & fifth, nibble, 0xE4);
        var high = Avx512F.TernaryLogic(Vector512.ShiftRightLogical(v.AsUInt16(), 4).AsByte(), THigh.ToBit4(h) & fifth, nibble, 0xE4);
        return (low, high);
    }

    /// <summary>
    /// GEMM tile: four tokens × 16 rows; each quant group's codes are built once for the four tokens, the groups
    /// summed four at a time as in <see cref="Tiles"/>, so the same integer sums and float order per token: the same bits.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void TilesFourTokens(byte* weights, long rowBytes, int tiles, byte* s0, int stateStride, int blocks, float* y, long yStride)
    {
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
                var scalesLow = u0 & Vector512.Create(0x3F3F3F3Fu);
                var scalesHigh = (u2 & Vector512.Create(0x0F0F0F0Fu)) | (Vector512.ShiftRightLogical(u0, 2) & Vector512.Create(0x30303030u));
                Vector512<int> sumi0 = default, sumi1 = default, sumi2 = default, sumi3 = default;
                var o = b * ActivationBlockBytes + 4;
                FourTokenChunk<Shift4, Shift3>(w, 0, o, s0, s1, s2, s3, Q4_KInterleavedMatVec.Pair(scalesLow, 0), Q4_KInterleavedMatVec.Pair(scalesLow, 8), ref sumi0, ref sumi1, ref sumi2, ref sumi3);
                FourTokenChunk<Shift2, Shift1>(w, 1, o, s0, s1, s2, s3, Q4_KInterleavedMatVec.Pair(scalesLow, 16), Q4_KInterleavedMatVec.Pair(scalesLow, 24), ref sumi0, ref sumi1, ref sumi2, ref sumi3);
                FourTokenChunk<Shift0, ShiftMinus1>(w, 2, o, s0, s1, s2, s3, Q4_KInterleavedMatVec.Pair(scalesHigh, 0), Q4_KInterleavedMatVec.Pair(scalesHigh, 8), ref sumi0, ref sumi1, ref sumi2, ref sumi3);
                FourTokenChunk<ShiftMinus2, ShiftMinus3>(w, 3, o, s0, s1, s2, s3, Q4_KInterleavedMatVec.Pair(scalesHigh, 16), Q4_KInterleavedMatVec.Pair(scalesHigh, 24), ref sumi0, ref sumi1, ref sumi2, ref sumi3);
                var dw = HalfToSingle512(w);
                var dmin = HalfToSingle512(w + 2 * TileRows);
                var ab = b * ActivationBlockBytes;
                c0 = Q4_KInterleavedMatVec.Combine(c0, w, s0 + ab, sumi0, dw, dmin);
                c1 = Q4_KInterleavedMatVec.Combine(c1, w, s1 + ab, sumi1, dw, dmin);
                c2 = Q4_KInterleavedMatVec.Combine(c2, w, s2 + ab, sumi2, dw, dmin);
                c3 = Q4_KInterleavedMatVec.Combine(c3, w, s3 + ab, sumi3, dw, dmin);
            }
            var yt = y + tile * TileRows;
            c0.Store(yt);
            c1.Store(yt + yStride);
            c2.Store(yt + 2 * yStride);
            c3.Store(yt + 3 * yStride);
        }
    }

    /// <summary>
    /// Chunk <paramref name="chunk"/> of one tile block for four tokens, in two halves of four quant groups. Inlined:
    /// as a call, the four token sums went through memory and the tile's live registers were saved around it (pp128
    /// 46 against 56-58 t/s, llama-1b, one thread); <c>DOTNET_JitDisasmSummary</c> shows no helper left at tier 0.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void FourTokenChunk<TLow, THigh>(byte* w, int chunk, int o, byte* s0, byte* s1, byte* s2, byte* s3,
        Vector512<short> lowScale, Vector512<short> highScale, ref Vector512<int> sumi0, ref Vector512<int> sumi1, ref Vector512<int> sumi2, ref Vector512<int> sumi3)
        where TLow : struct, IBitShift where THigh : struct, IBitShift
    {
        var q = w + QuantsOffset + 512 * chunk;
        var h = w + HighBitsOffset;
        for (var half = 0; half < 2; half++)
        {
            Vector512<short> low0 = default, low1 = default, low2 = default, low3 = default;
            Vector512<short> high0 = default, high1 = default, high2 = default, high3 = default;
            for (var k = 4 * half; k < 4 * half + 4; k++)
            {
                var (lo, hi) = Codes<TLow, THigh>(Vector512.Load(q + 64 * k), Vector512.Load(h + 64 * k));
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
            sumi0 += Avx512BW.MultiplyAddAdjacent(low0, lowScale) + Avx512BW.MultiplyAddAdjacent(high0, highScale);
            sumi1 += Avx512BW.MultiplyAddAdjacent(low1, lowScale) + Avx512BW.MultiplyAddAdjacent(high1, highScale);
            sumi2 += Avx512BW.MultiplyAddAdjacent(low2, lowScale) + Avx512BW.MultiplyAddAdjacent(high2, highScale);
            sumi3 += Avx512BW.MultiplyAddAdjacent(low3, lowScale) + Avx512BW.MultiplyAddAdjacent(high3, highScale);
        }
    }

    /// <summary>
    /// Moves one bit of every qh byte to bit 4 with one 16-bit shift (by at most 4, so bit 4 of each byte comes from
    /// the same byte); the caller masks off the other bits. Shift<i>N</i> shifts left by N, ShiftMinus<i>N</i> right.
    /// </summary>
    private interface IBitShift
    {
        static abstract Vector512<byte> ToBit4(Vector512<byte> h);
    }

    private struct Shift4 : IBitShift
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<byte> ToBit4(Vector512<byte> h) => Vector512.ShiftLeft(h.AsUInt16(), 4).AsByte();
    }

    private struct Shift3 : IBitShift
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<byte> ToBit4(Vector512<byte> h) => Vector512.ShiftLeft(h.AsUInt16(), 3).AsByte();
    }

    private struct Shift2 : IBitShift
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<byte> ToBit4(Vector512<byte> h) => Vector512.ShiftLeft(h.AsUInt16(), 2).AsByte();
    }

    private struct Shift1 : IBitShift
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<byte> ToBit4(Vector512<byte> h) => Vector512.ShiftLeft(h.AsUInt16(), 1).AsByte();
    }

    private struct Shift0 : IBitShift
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<byte> ToBit4(Vector512<byte> h) => h;
    }

    private struct ShiftMinus1 : IBitShift
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<byte> ToBit4(Vector512<byte> h) => Vector512.ShiftRightLogical(h.AsUInt16(), 1).AsByte();
    }

    private struct ShiftMinus2 : IBitShift
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<byte> ToBit4(Vector512<byte> h) => Vector512.ShiftRightLogical(h.AsUInt16(), 2).AsByte();
    }

    private struct ShiftMinus3 : IBitShift
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<byte> ToBit4(Vector512<byte> h) => Vector512.ShiftRightLogical(h.AsUInt16(), 3).AsByte();
    }
}
