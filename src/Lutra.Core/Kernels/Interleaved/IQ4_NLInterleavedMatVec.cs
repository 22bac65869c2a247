using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Lutra.Core.Quants;
using static Lutra.Core.Kernels.InterleavedSteps;
using Grid = Lutra.Core.Kernels.IQ4_XSInterleavedMatVec;

namespace Lutra.Core.Kernels;

/// <summary>
/// IQ4_NL weights · Q8_0 activations over 16-row interleaved tiles (AVX-512 BW): Q4_0's tile layout (an IQ4_NL block
/// has Q4_0's shape: an f16 d and 16 bytes of nibbles, low nibbles elements 0-15, high nibbles 16-31) with
/// <see cref="IQ4_XSInterleavedMatVec"/>'s arithmetic for the non-linear grid.
/// <para>
/// A code c stands for T[c] (negative for c &lt; 8, |T| ≤ 127): vpmaddubsw takes |T[c]| from a vpshufb table and the
/// activation or its negation (a byte-masked blend of two broadcasts; the activation row carries the negated values
/// after the Q8_0 row, whose values lie in [−127, 127] since q = round(127·x/amax)). Every vpmaddubsw pair (at most
/// 2·127·127 &lt; 2¹⁵) is widened at once by a vpmaddwd with ones, since two pairs could wrap int16. Per block the
/// float step is the reference's, (d_w·d_a)·sumi, so every output equals <see cref="QuantReference.Dot"/> bit for
/// bit. Rows after the last whole tile keep the GGUF layout and run through the reference dot product.
/// </para>
/// </summary>
public sealed unsafe class IQ4_NLInterleavedMatVec() : InterleavedTileMatVec(GgmlType.IQ4_NL, InstructionSet.Avx512, "AVX-512 BW 16-row interleaved")
{
    private const int BlockBytes = 18;
    private const int TileBlockBytes = TileRows * BlockBytes;

    /// <summary>Into L2, 8 KiB ahead, as the IQ4_XS tiles (<see cref="IQ4_XSInterleavedMatVec.Group"/> prefetches each quant line); then into L1 (<see cref="InterleavedSteps.PrefetchTwoStage"/>).</summary>
    private const int PrefetchAhead = 8192;

    public static bool IsSupported => KernelIsa.IsSupported(InstructionSet.Avx512);

    /// <summary>The Q8_0 row, its n values negated, then d_a of every block as f32 (each part 64-byte aligned).</summary>
    public override int ActivationBytes(int n) => NegatedOffset(n) + AlignUp(n) + AlignUp(n / Block * 4);

    private int NegatedOffset(int n) => AlignUp(StandardActivationBytes(n));

    private int ScalesOffset(int n) => NegatedOffset(n) + AlignUp(n);

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public override void PrepareActivations(float* x, int n, byte* state)
    {
        Q8_0Kernels.QuantizeRowAvx512(x, state, n);
        var negated = state + NegatedOffset(n);
        var scales = (float*)(state + ScalesOffset(n));
        for (var b = 0; b < n / Block; b++)
        {
            var block = state + b * ActivationBlockBytes;
            (Vector256<sbyte>.Zero - Vector256.Load((sbyte*)(block + 2))).Store((sbyte*)(negated + b * Block));
            scales[b] = HalfLookup.ToSingle(block);
        }
    }

    /// <summary>Q4_0's repacking (<see cref="InterleavedSteps.TryRepackTiles"/>): the same block shape, codes as they are.</summary>
    public override bool TryPrepareWeights(byte* source, long rowBytes, int rows, int n, byte* destination) =>
        TryRepackTiles(source, rowBytes, rows, n, destination, BlockBytes, 0u);

    private protected override void WholeTiles(byte* weights, long rowBytes, int tiles, byte* state, int n, float* y) =>
        Tiles(weights, rowBytes, tiles, state, state + NegatedOffset(n), (float*)(state + ScalesOffset(n)), n / Block, y);

    private protected override void WholeTilesFourTokens(byte* weights, long rowBytes, int tiles, byte* s0, int stateStride, int n, float* y, long yStride) =>
        TilesFourTokens(weights, rowBytes, tiles, s0, stateStride, NegatedOffset(n), ScalesOffset(n), n / Block, y, yStride);

    /// <summary>Whole tiles, one token.</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void Tiles(byte* weights, long rowBytes, int tiles, byte* state, byte* negated, float* scales, int blocks, float* y)
    {
        var magnitudes = Grid.MagnitudeTable;
        var one = Vector512<short>.One;
        for (var tile = 0; tile < tiles; tile++)
        {
            var w = weights + tile * TileRows * rowBytes;
            var a = state + 2;
            var na = negated;
            var acc = Vector512<float>.Zero;
            for (var b = 0; b < blocks; b++, w += TileBlockBytes, a += ActivationBlockBytes, na += Block)
            {
                // The group loads prefetch their own lines; this covers the line a block's scales can start alone.
                PrefetchTwoStage(w + PrefetchAhead, PrefetchAhead);
                var q = w + 2 * TileRows;
                var sumi = (Grid.Group(q, a, na, one, magnitudes) + Grid.Group(q + 64, a + 4, na + 4, one, magnitudes))
                    + (Grid.Group(q + 128, a + 8, na + 8, one, magnitudes) + Grid.Group(q + 192, a + 12, na + 12, one, magnitudes));
                acc += HalfToSingle512(w) * Vector512.Create(scales[b]) * Vector512.ConvertToSingle(sumi);
            }
            acc.Store(y + tile * TileRows);
        }
    }

    /// <summary>
    /// GEMM tile: four tokens × 16 rows; each quant group's magnitudes and sign masks are found once for the four
    /// tokens. The same integer sums and float step per token as <see cref="Tiles"/>, so the same bits.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void TilesFourTokens(byte* weights, long rowBytes, int tiles, byte* s0, int stateStride, int negatedOffset, int scalesOffset, int blocks,
        float* y, long yStride)
    {
        var magnitudes = Grid.MagnitudeTable;
        var one = Vector512<short>.One;
        var s1 = s0 + stateStride;
        var s2 = s1 + stateStride;
        var s3 = s2 + stateStride;
        for (var tile = 0; tile < tiles; tile++)
        {
            var w = weights + tile * TileRows * rowBytes;
            Vector512<float> c0 = default, c1 = default, c2 = default, c3 = default;
            for (var b = 0; b < blocks; b++, w += TileBlockBytes)
            {
                Vector512<int> sumi0 = default, sumi1 = default, sumi2 = default, sumi3 = default;
                var q = w + 2 * TileRows;
                var ao = b * ActivationBlockBytes + 2;
                var no = negatedOffset + b * Block;
                for (var k = 0; k < 4; k++, q += 64, ao += 4, no += 4)
                {
                    var v = Vector512.Load(q);
                    var (lm, hm) = Grid.Magnitudes(v, magnitudes);
                    sumi0 += Grid.LowProduct(v, lm, s0 + ao, s0 + no, one) + Grid.HighProduct(v, hm, s0 + ao + 16, s0 + no + 16, one);
                    sumi1 += Grid.LowProduct(v, lm, s1 + ao, s1 + no, one) + Grid.HighProduct(v, hm, s1 + ao + 16, s1 + no + 16, one);
                    sumi2 += Grid.LowProduct(v, lm, s2 + ao, s2 + no, one) + Grid.HighProduct(v, hm, s2 + ao + 16, s2 + no + 16, one);
                    sumi3 += Grid.LowProduct(v, lm, s3 + ao, s3 + no, one) + Grid.HighProduct(v, hm, s3 + ao + 16, s3 + no + 16, one);
                }
                var dw = HalfToSingle512(w);
                var so = scalesOffset + 4 * b;
                c0 += dw * Vector512.Create(*(float*)(s0 + so)) * Vector512.ConvertToSingle(sumi0);
                c1 += dw * Vector512.Create(*(float*)(s1 + so)) * Vector512.ConvertToSingle(sumi1);
                c2 += dw * Vector512.Create(*(float*)(s2 + so)) * Vector512.ConvertToSingle(sumi2);
                c3 += dw * Vector512.Create(*(float*)(s3 + so)) * Vector512.ConvertToSingle(sumi3);
            }
            var yt = y + tile * TileRows;
            c0.Store(yt);
            c1.Store(yt + yStride);
            c2.Store(yt + 2 * yStride);
            c3.Store(yt + 3 * yStride);
        }
    }
}
