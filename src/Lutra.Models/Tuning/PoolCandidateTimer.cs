using System.Runtime.CompilerServices;
using Lutra.Core.Diagnostics;
using Lutra.Core.Kernels;
using Lutra.Core.Threading;
using Lutra.Models.Blocks;

namespace Lutra.Models.Tuning;

/// <summary>
/// Times a candidate the way a forward pass runs it: the tokens' activations (prepared from a fixed random input), the
/// whole matrix split over a pool of the configured size by <see cref="MatMulWork"/>, weights read from memory
/// (a cache flush before each repetition, for matrices small enough to stay cached otherwise), the median of a
/// few repetitions. The pool and the flush buffer are created on first use, so a load with nothing to tune pays
/// for neither.
/// </summary>
internal sealed unsafe class PoolCandidateTimer(int threads) : ICandidateTimer, IDisposable
{
    private const int MinRepetitions = 2;
    private const int MaxRepetitions = 5;
    private const int PromptRepetitions = 2;
    // Per call; the selector calls once per candidate in each of its rounds.
    private static readonly TimeSpan Budget = TimeSpan.FromMilliseconds(10);

    private ComputePool? _pool;
    private MatMulWork? _work;
    private CacheFlush? _flush;

    public double Seconds(WeightMatrix matrix, MatVecKernel kernel, byte* weights, int tokens)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(tokens, 1);
        _pool ??= new ComputePool(threads, "lutra-tune");
        _work ??= new MatMulWork(_pool);
        var columns = matrix.Columns;
        var source = GC.AllocateUninitializedArray<float>(tokens * columns, pinned: true);
        var random = new Random(20251123);
        for (var i = 0; i < source.Length; i++)
            source[i] = (float)(random.NextDouble() * 2 - 1);
        // Prepared the way a forward pass prepares them, through QuantizedInput: on the pool, and for a decoded token
        // of a lookup-table kernel once per thread (tables read across cores cost two-thread decode 14 %; timed with
        // one shared copy, the TQ1_0 tables read 154 µs on llama-1b's 2048x8192 shape against 82 for the tiles).
        var input = new QuantizedInput([kernel], tokens, columns, threads);
        var output = GC.AllocateUninitializedArray<float>(tokens * matrix.Rows, pinned: true);
        var y = (float*)Unsafe.AsPointer(ref output[0]);
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
        // The activations' preparation is part of the cost: a lookup-table kernel's tables take 5-15 % of its product
        // on llama-1b shapes (more on a prompt batch), where a multiply-add kernel's int8 rows take under 1 %. It is
        // charged to every matrix, though Q/K/V (and gate/up) share one preparation in a forward pass.
        void Timed()
        {
            input.Bind(source, tokens, columns);
            var states = input.Get(kernel, out var stride, pool, out var perThread);
            work.Run(kernel, weights, rowBytes, matrix.Rows, columns, states, stride, perThread, tokens, y);
        }
        // A prompt batch is timed after the same candidate's decode rounds (its weights are already touched) and
        // only on the shortlist: fewer repetitions keep the whole tuning of a 1B model near a second.
        var seconds = tokens == 1
            ? RepeatedTiming.MedianSeconds(Timed, flush, MinRepetitions, MaxRepetitions, Budget)
            : RepeatedTiming.MedianSeconds(Timed, flush, 1, PromptRepetitions, Budget);
        GC.KeepAlive(output);
        GC.KeepAlive(source);
        return seconds;
    }

    public void Dispose()
    {
        _flush?.Dispose();
        _pool?.Dispose();
    }
}
