using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Lutra.Core.Quants;
using static Lutra.Core.Kernels.InterleavedSteps;

namespace Lutra.Core.Kernels;

/// <summary>
/// Q5_1 weights · Q8_1 activations over 16-row interleaved tiles (AVX-512 BW + VBMI): <see cref="Q4_1InterleavedMatVec"/>'s
/// tiles and float step with <see cref="Q5_0InterleavedMatVec"/>'s fifth bits.
/// <para>
/// Tile block (384 bytes, 16 GGUF blocks' worth): the 16 rows' f16 d, their f16 m, their 32-bit qh as one 64-byte
/// group, then Q4_1's four quant groups. The codes (≤ 31, no offset) are built as Q5_0's, four groups sum in int16 per
/// nibble plane, and per block (d_w·d_a)·sumi + m_w·s_a is added in the reference's order with Q4_1's scaled-down
/// factors (the same real products, so the same rounding): every output equals <see cref="QuantReference.Dot"/> bit
/// for bit. Rows after the last whole tile keep the GGUF layout and run through the reference dot product.
/// </para>
/// </summary>
public sealed unsafe class Q5_1InterleavedMatVec() : InterleavedTileMatVec(GgmlType.Q5_1, InstructionSet.Avx512, "AVX-512 VBMI 16-row interleaved")
{
    private const int BlockBytes = 24;
    private const int TileBlockBytes = TileRows * BlockBytes;
    private const int HighBitsOffset = 4 * TileRows;
    private const int QuantsOffset = HighBitsOffset + 4 * TileRows;
    private const int Q8_1BlockBytes = 36;

    public static bool IsSupported => Q5_0InterleavedMatVec.IsSupported;

    public override int ActivationBytes(int n) => InterleavedSteps.ActivationBytes(StandardActivationBytes(n), n);

    /// <summary>Q4_1's activations: the Q8_1 row, then d_a·2¹¹² and s_a·2¹¹² per block.</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public override void PrepareActivations(float* x, int n, byte* state) =>
        Q4_1InterleavedMatVec.PrepareScaledActivations(x, n, state, StandardActivationBytes(n));

    public override bool TryPrepareWeights(byte* source, long rowBytes, int rows, int n, byte* destination) =>
        Q4_1InterleavedMatVec.TryRepackTiles(source, rowBytes, rows, n, destination, BlockBytes, highBits: true);

    private protected override void WholeTiles(byte* weights, long rowBytes, int tiles, byte* state, int n, float* y) =>
        Tiles(weights, rowBytes, tiles, state, state + SidecarOffset(StandardActivationBytes(n)), n / Block, y);

    private protected override void WholeTilesFourTokens(byte* weights, long rowBytes, int tiles, byte* s0, int stateStride, int n, float* y, long yStride) =>
        TilesFourTokens(weights, rowBytes, tiles, s0, stateStride, SidecarOffset(StandardActivationBytes(n)), n / Block, y, yStride);

    /// <summary>Whole tiles, one token.</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void Tiles(byte* weights, long rowBytes, int tiles, byte* state, byte* sidecar, int blocks, float* y)
    {
        var picks = new Q5_0InterleavedMatVec.BitPicks();
        var signAndMagnitude = Vector512.Create(unchecked((int)0x8FFF_FFFF));
        for (var tile = 0; tile < tiles; tile++)
        {
            var w = weights + tile * TileRows * rowBytes;
            var a = state + 4;
            var s = sidecar;
            var acc = Vector512<float>.Zero;
            for (var b = 0; b < blocks; b++, w += TileBlockBytes, a += Q8_1BlockBytes, s += SidecarBlockBytes)
            {
                PrefetchStream(w, TileBlockBytes);
                var qh = Vector512.Load((ulong*)(w + HighBitsOffset));
                var q = w + QuantsOffset;
                var (l0, h0) = Q5_0InterleavedMatVec.Codes(Vector512.Load(q), qh, picks.Low0, picks.High0);
                var (l1, h1) = Q5_0InterleavedMatVec.Codes(Vector512.Load(q + 64), qh, picks.Low1, picks.High1);
                var (l2, h2) = Q5_0InterleavedMatVec.Codes(Vector512.Load(q + 128), qh, picks.Low2, picks.High2);
                var (l3, h3) = Q5_0InterleavedMatVec.Codes(Vector512.Load(q + 192), qh, picks.Low3, picks.High3);
                acc = Token(a, s, l0, l1, l2, l3, h0, h1, h2, h3, Q4_1InterleavedMatVec.ScaledDown(w, signAndMagnitude),
                    Q4_1InterleavedMatVec.ScaledDown(w + 2 * TileRows, signAndMagnitude), acc);
            }
            acc.Store(y + tile * TileRows);
        }
    }

    /// <summary>acc + ((d_w·d_a)·sumᵢ + m_w·s_a) for one token and the 16 rows of one block, the reference's float order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Token(byte* a, byte* sidecar, Vector512<byte> l0, Vector512<byte> l1, Vector512<byte> l2, Vector512<byte> l3,
        Vector512<byte> h0, Vector512<byte> h1, Vector512<byte> h2, Vector512<byte> h3, Vector512<float> dw, Vector512<float> mw, Vector512<float> acc)
    {
        var sums = Q5_0InterleavedMatVec.BlockSums(a, l0, l1, l2, l3, h0, h1, h2, h3);
        return acc + (dw * Vector512.Create(*(float*)sidecar) * Vector512.ConvertToSingle(sums) + mw * Vector512.Create(*(float*)(sidecar + 4)));
    }

    /// <summary>GEMM tile: four tokens × 16 rows; a block's codes are built once for the four tokens.</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void TilesFourTokens(byte* weights, long rowBytes, int tiles, byte* s0, int stateStride, int sidecarOffset, int blocks, float* y, long yStride)
    {
        var picks = new Q5_0InterleavedMatVec.BitPicks();
        var signAndMagnitude = Vector512.Create(unchecked((int)0x8FFF_FFFF));
        var s1 = s0 + stateStride;
        var s2 = s1 + stateStride;
        var s3 = s2 + stateStride;
        for (var tile = 0; tile < tiles; tile++)
        {
            var w = weights + tile * TileRows * rowBytes;
            Vector512<float> c0 = default, c1 = default, c2 = default, c3 = default;
            for (var b = 0; b < blocks; b++, w += TileBlockBytes)
            {
                var qh = Vector512.Load((ulong*)(w + HighBitsOffset));
                var q = w + QuantsOffset;
                var (l0, h0) = Q5_0InterleavedMatVec.Codes(Vector512.Load(q), qh, picks.Low0, picks.High0);
                var (l1, h1) = Q5_0InterleavedMatVec.Codes(Vector512.Load(q + 64), qh, picks.Low1, picks.High1);
                var (l2, h2) = Q5_0InterleavedMatVec.Codes(Vector512.Load(q + 128), qh, picks.Low2, picks.High2);
                var (l3, h3) = Q5_0InterleavedMatVec.Codes(Vector512.Load(q + 192), qh, picks.Low3, picks.High3);
                var dw = Q4_1InterleavedMatVec.ScaledDown(w, signAndMagnitude);
                var mw = Q4_1InterleavedMatVec.ScaledDown(w + 2 * TileRows, signAndMagnitude);
                var o = b * Q8_1BlockBytes + 4;
                var so = sidecarOffset + b * SidecarBlockBytes;
                c0 = Token(s0 + o, s0 + so, l0, l1, l2, l3, h0, h1, h2, h3, dw, mw, c0);
                c1 = Token(s1 + o, s1 + so, l0, l1, l2, l3, h0, h1, h2, h3, dw, mw, c1);
                c2 = Token(s2 + o, s2 + so, l0, l1, l2, l3, h0, h1, h2, h3, dw, mw, c2);
                c3 = Token(s3 + o, s3 + so, l0, l1, l2, l3, h0, h1, h2, h3, dw, mw, c3);
            }
            var yt = y + tile * TileRows;
            c0.Store(yt);
            c1.Store(yt + yStride);
            c2.Store(yt + 2 * yStride);
            c3.Store(yt + 3 * yStride);
        }
    }
}
