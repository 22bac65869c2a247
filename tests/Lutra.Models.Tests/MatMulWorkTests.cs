using Lutra.Core.Kernels;
using Lutra.Core.Quants;
using Lutra.Core.Tensors;
using Lutra.Core.Threading;
using Lutra.Models.Blocks;

namespace Lutra.Models.Tests;

/// <summary>
/// MatMulWork's split of a job over the pool: every output row is computed exactly once, by one call whose range
/// starts at a multiple of the kernel's row tile, however many threads share the job and whoever takes a chunk.
/// </summary>
public sealed unsafe class MatMulWorkTests
{
    /// <summary>Writes, per output row, how many times a call covered it (y[t·rows + r] += 1), and checks the tile alignment.</summary>
    private sealed class CountingKernel(int rowTile) : MatVecKernel(GgmlType.F32, InstructionSet.Scalar, "counting")
    {
        public override int RowTile => rowTile;

        public byte* Base;
        public long RowBytes;
        public int Misaligned;

        public override void PrepareActivations(float* x, int n, byte* state) { }

        public override void MatVec(byte* weights, long rowBytes, int rows, byte* state, int n, float* y)
        {
            if ((weights - Base) / RowBytes % rowTile != 0)
                Interlocked.Increment(ref Misaligned);
            for (var r = 0; r < rows; r++)
                y[r] += 1;
        }
    }

    [Theory]
    [InlineData(1, 1, 1)]
    [InlineData(2, 1, 1)]
    [InlineData(2, 16, 1)]
    [InlineData(3, 16, 1)]
    [InlineData(4, 512, 1)]
    [InlineData(2, 16, 5)]
    [InlineData(3, 1, 7)]
    public void Every_row_is_computed_once_in_tile_aligned_calls(int threads, int rowTile, int tokens)
    {
        // 4 MB of f32 weights at one token: several 256 KB chunks per thread, and a ragged last tile.
        const int columns = 256;
        var rows = 4096 + 13;
        var kernel = new CountingKernel(rowTile);
        using var weights = new NativeBuffer((long)rows * columns * 4);
        using var pool = new ComputePool(threads);
        var work = new MatMulWork(pool);
        var y = new float[tokens * rows];
        kernel.Base = weights.Pointer;
        kernel.RowBytes = columns * 4;
        fixed (float* yp = y)
        {
            for (var repeat = 0; repeat < 3; repeat++)
                work.Run(kernel, weights.Pointer, columns * 4, rows, columns, null, 0, perThreadStates: false, tokens, yp);
        }
        Assert.All(y, v => Assert.Equal(3f, v));
        Assert.Equal(0, kernel.Misaligned);
    }
}
