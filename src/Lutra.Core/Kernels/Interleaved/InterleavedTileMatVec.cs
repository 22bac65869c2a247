using System.Runtime.CompilerServices;
using Lutra.Core.Quants;
using static Lutra.Core.Kernels.InterleavedSteps;

namespace Lutra.Core.Kernels;

/// <summary>
/// The driver shared by the 16-row interleaved kernels that have one tile path: whole tiles through the kernel's
/// one-token loop (decode) or its four-token GEMM tile (a prompt, four tokens at a time, the last 1-3 tokens one by
/// one), and the rows after the last whole tile, which keep the GGUF layout, through the reference dot product (exact,
/// as the tiles are).
/// </summary>
public abstract unsafe class InterleavedTileMatVec(GgmlType weightType, InstructionSet isa, string description)
    : MatVecKernel(weightType, isa, description)
{
    public sealed override bool RepacksWeights => true;

    public sealed override int RowTile => TileRows;

    /// <summary>Whole tiles (<paramref name="tiles"/> × 16 rows) against one token's prepared activations.</summary>
    private protected abstract void WholeTiles(byte* weights, long rowBytes, int tiles, byte* state, int n, float* y);

    /// <summary>Whole tiles against four tokens' prepared activations, <paramref name="stateStride"/> bytes apart.</summary>
    private protected abstract void WholeTilesFourTokens(byte* weights, long rowBytes, int tiles, byte* s0, int stateStride, int n, float* y, long yStride);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public sealed override void MatVec(byte* weights, long rowBytes, int rows, byte* state, int n, float* y)
    {
        var tiles = rows / TileRows;
        WholeTiles(weights, rowBytes, tiles, state, n, y);
        ReferenceRows(weights, rowBytes, tiles * TileRows, rows, state, n, y);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public sealed override void MatMat(byte* weights, long rowBytes, int rows, byte* states, int stateStride, int tokens, int n, float* y, long yStride)
    {
        var tiles = rows / TileRows;
        var t = 0;
        for (; t + 4 <= tokens; t += 4)
        {
            var s0 = states + (long)t * stateStride;
            WholeTilesFourTokens(weights, rowBytes, tiles, s0, stateStride, n, y + t * yStride, yStride);
            for (var k = 0; k < 4; k++)
                ReferenceRows(weights, rowBytes, tiles * TileRows, rows, s0 + (long)k * stateStride, n, y + (t + k) * yStride);
        }
        for (; t < tokens; t++)
            MatVec(weights, rowBytes, rows, states + (long)t * stateStride, n, y + t * yStride);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void ReferenceRows(byte* weights, long rowBytes, int first, int rows, byte* state, int n, float* y)
    {
        var activations = new ReadOnlySpan<byte>(state, StandardActivationBytes(n));
        for (var r = first; r < rows; r++)
            y[r] = QuantReference.Dot(WeightType, new ReadOnlySpan<byte>(weights + r * rowBytes, (int)rowBytes), activations, n);
    }
}
