using Lutra.Core.Kernels;
using Lutra.Core.Threading;

namespace Lutra.Models.Blocks;

/// <summary>
/// y = W·x for every bound input row. The fast path runs the weight's <see cref="MatVecKernel"/> on activations
/// prepared once per input, with the output rows split over the compute pool. Reference mode dequantizes every
/// weight row and multiplies it with the unrounded f32 input, accumulating in double.
/// </summary>
public static class MatMul
{
    /// <summary><paramref name="y"/> receives input.Rows rows of w.Rows values (row-major).</summary>
    /// <param name="rowScratch">At least w.Columns floats (reference mode only).</param>
    public static unsafe void Multiply(WeightMatrix w, QuantizedInput input, Span<float> y, bool reference, Span<float> rowScratch,
        MatMulWork work)
    {
        if (input.Columns != w.Columns)
            throw new InvalidOperationException($"{w.Name}: input has {input.Columns} columns, weight expects {w.Columns}");
        if (y.Length < input.Rows * w.Rows)
            throw new ArgumentException($"{w.Name}: output holds {y.Length} floats, {input.Rows}×{w.Rows} needed", nameof(y));
        if (reference)
        {
            MultiplyReference(w, input, y, rowScratch);
            return;
        }
        var states = input.Get(w.Kernel, out var stride, work.Pool);
        fixed (float* yp = y)
            work.Run(w, states, stride, input.Rows, yp);
    }

    private static void MultiplyReference(WeightMatrix w, QuantizedInput input, Span<float> y, Span<float> rowScratch)
    {
        var x = input.Source;
        var tokens = input.Rows;
        var outputs = w.Rows;
        var row = rowScratch[..w.Columns];
        for (var r = 0; r < outputs; r++)
        {
            w.DequantizeRow(r, row);
            for (var t = 0; t < tokens; t++)
            {
                var xt = x.Slice(t * w.Columns, w.Columns);
                var sum = 0.0;
                for (var i = 0; i < row.Length; i++)
                    sum += (double)row[i] * xt[i];
                y[t * outputs + r] = (float)sum;
            }
        }
    }

    /// <summary>Adds a bias vector to every row of <paramref name="y"/>.</summary>
    public static void AddBias(Span<float> y, ReadOnlySpan<float> bias)
    {
        for (var t = 0; t + bias.Length <= y.Length; t += bias.Length)
        {
            var row = y.Slice(t, bias.Length);
            for (var i = 0; i < bias.Length; i++)
                row[i] += bias[i];
        }
    }
}

/// <summary>
/// One matmul split over the pool's threads by output rows (a reused object, so dispatch allocates nothing).
/// With several input rows (prefill), each thread walks its rows in tiles small enough to stay in cache while
/// every token of the batch passes over them, so weights are read from memory once per batch, not per token.
/// </summary>
public sealed unsafe class MatMulWork(ComputePool pool) : IComputeWork
{
    // Rows per tile: 16 rows of the widest common matrices (16 K columns of Q8_0) stay within L2.
    private const int RowTile = 16;

    private MatVecKernel? _kernel;
    private byte* _weights;
    private long _rowBytes;
    private int _rows;
    private int _columns;
    private byte* _states;
    private int _stateStride;
    private int _tokens;
    private float* _y;

    public ComputePool Pool { get; } = pool;

    internal void Run(WeightMatrix w, byte* states, int stateStride, int tokens, float* y) =>
        Run(w.Kernel, w.KernelData, w.RowBytes, w.Rows, w.Columns, states, stateStride, tokens, y);

    /// <summary>
    /// <paramref name="kernel"/> over <paramref name="rows"/> rows at <paramref name="weights"/> (in the kernel's
    /// layout), split over the pool exactly as a forward pass splits it: the kernel tuner times candidates here.
    /// </summary>
    internal void Run(MatVecKernel kernel, byte* weights, long rowBytes, int rows, int columns, byte* states, int stateStride, int tokens,
        float* y)
    {
        _kernel = kernel;
        _weights = weights;
        _rowBytes = rowBytes;
        _rows = rows;
        _columns = columns;
        _states = states;
        _stateStride = stateStride;
        _tokens = tokens;
        _y = y;
        try
        {
            // Small matrices are not worth waking the other threads for.
            if (Pool.ThreadCount == 1 || (long)_rows * _columns * tokens < 64 * 1024)
                Execute(0, 1);
            else
                Pool.Run(this);
        }
        finally
        {
            _kernel = null;
            _weights = null;
            _states = null;
            _y = null;
        }
    }

    public void Execute(int threadIndex, int threadCount)
    {
        // Repacking kernels read whole tiles of rows: split (and step) at their tile size.
        var tile = Math.Max(RowTile, _kernel!.RowTile);
        var (start, end) = ComputePool.Partition(_rows, threadIndex, threadCount, tile);
        if (start >= end)
            return;
        var kernel = _kernel!;
        if (_tokens == 1)
        {
            kernel.MatVec(_weights + start * _rowBytes, _rowBytes, end - start, _states, _columns, _y + start);
            return;
        }
        for (var r = start; r < end; r += tile)
        {
            var count = Math.Min(tile, end - r);
            kernel.MatMat(_weights + r * _rowBytes, _rowBytes, count, _states, _stateStride, _tokens, _columns, _y + r, _rows);
        }
    }
}
