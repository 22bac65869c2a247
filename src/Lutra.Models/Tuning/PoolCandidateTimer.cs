using System.Runtime.CompilerServices;
using Lutra.Core.Diagnostics;
using Lutra.Core.Kernels;
using Lutra.Core.Tensors;
using Lutra.Core.Threading;
using Lutra.Models.Blocks;

namespace Lutra.Models.Tuning;

/// <summary>
/// Times a candidate the way decode runs it: one token's activations (prepared from a fixed random input), the
/// whole matrix split over a pool of the configured size by <see cref="MatMulWork"/>, weights read from memory
/// (a cache flush before each repetition, for matrices small enough to stay cached otherwise), the median of a
/// few repetitions. The pool and the flush buffer are created on first use, so a load with nothing to tune pays
/// for neither.
/// </summary>
internal sealed unsafe class PoolCandidateTimer(int threads) : ICandidateTimer, IDisposable
{
    private const int MinRepetitions = 2;
    private const int MaxRepetitions = 5;
    // Per call; the selector calls once per candidate in each of its rounds.
    private static readonly TimeSpan Budget = TimeSpan.FromMilliseconds(10);

    private ComputePool? _pool;
    private MatMulWork? _work;
    private CacheFlush? _flush;

    public double Seconds(WeightMatrix matrix, MatVecKernel kernel, byte* weights)
    {
        _pool ??= new ComputePool(threads);
        _work ??= new MatMulWork(_pool);
        var columns = matrix.Columns;
        var input = new float[columns];
        var random = new Random(20251123);
        for (var i = 0; i < input.Length; i++)
            input[i] = (float)(random.NextDouble() * 2 - 1);
        using var state = new NativeBuffer(kernel.ActivationBytes(columns));
        fixed (float* x = input)
            kernel.PrepareActivations(x, columns, state.Pointer);
        var output = GC.AllocateUninitializedArray<float>(matrix.Rows, pinned: true);
        var y = (float*)Unsafe.AsPointer(ref output[0]);
        var prepared = state.Pointer;
        var stride = kernel.ActivationBytes(columns);
        var work = _work;
        var pool = _pool;
        // A repacking kernel's candidate copy is in its layout, whose rows may be wider than the GGUF ones.
        var rowBytes = kernel.RepacksWeights ? kernel.RepackedRowBytes(matrix.RowBytes, columns) : matrix.RowBytes;

        Action? flush = null;
        var flushBytes = CacheFlush.DefaultBytes();
        if (matrix.ByteSize < flushBytes)
        {
            _flush ??= new CacheFlush(flushBytes);
            var buffer = _flush;
            flush = () => buffer.Run(pool);
        }
        var seconds = RepeatedTiming.MedianSeconds(
            () => work.Run(kernel, weights, rowBytes, matrix.Rows, columns, prepared, stride, 1, y),
            flush, MinRepetitions, MaxRepetitions, Budget);
        GC.KeepAlive(output);
        return seconds;
    }

    public void Dispose()
    {
        _flush?.Dispose();
        _pool?.Dispose();
    }
}
