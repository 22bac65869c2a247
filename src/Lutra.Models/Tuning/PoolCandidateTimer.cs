using System.Runtime.CompilerServices;
using Lutra.Core.Diagnostics;
using Lutra.Core.Kernels;
using Lutra.Core.Threading;
using Lutra.Models.Blocks;

namespace Lutra.Models.Tuning;

/// <summary>
/// Times a candidate the way a forward pass runs it: the tokens' activations (prepared from a fixed random input), the
/// whole matrix split over a pool of the configured size by <see cref="MatMulWork"/>, weights read from memory in
/// decode (a cache flush at the start of each decode round, for matrices small enough to stay cached otherwise). The
/// pool and the flush buffer are created on first use, so a load with nothing to tune pays for neither.
/// </summary>
internal sealed unsafe class PoolCandidateTimer(int threads) : ICandidateTimer, IDisposable
{
    private ComputePool? _pool;
    private MatMulWork? _work;
    private CacheFlush? _flush;
    private ComputePool? _flushPool;
    private readonly long _flushBytes = CacheFlush.DefaultBytes();
    // The trials of the matrix being tuned: inputs, tables and outputs allocated and touched once, at the warm-up.
    private readonly Dictionary<(MatVecKernel Kernel, int Tokens), Trial> _trials = [];
    private WeightMatrix? _trialMatrix;

    public void WarmUp(WeightMatrix matrix, MatVecKernel kernel, byte* weights, int tokens) =>
        TrialFor(matrix, kernel, weights, tokens).Run();

    public void StartRound(WeightMatrix matrix)
    {
        // A matrix at least as large as the flush evicts itself: each product streams it from memory.
        if (matrix.ByteSize >= _flushBytes)
            return;
        _pool ??= new ComputePool(threads, "lutra-tune");
        _flush ??= new CacheFlush(_flushBytes);
        // On every core, whatever the run's thread count: the flush is all memory traffic, and a second core halves
        // it (256 MiB: 18-19 ms on one thread, 10-11 ms on two).
        _flushPool ??= threads >= Environment.ProcessorCount ? _pool : new ComputePool(Environment.ProcessorCount, "lutra-flush");
        _flush.Run(_flushPool);
    }

    public double Seconds(WeightMatrix matrix, MatVecKernel kernel, byte* weights, int tokens)
    {
        var trial = TrialFor(matrix, kernel, weights, tokens);
        // In a forward pass a matrix's weights come from memory but its input does not: the activations were just
        // written and the kernel's state buffer (a lookup-table kernel's 100-400 KB of tables) was written for the
        // previous matrix. After the round's flush both would be cold, and writing a table buffer that is not in
        // cache reads it from memory first. On the Intel host, llama-1b TQ1_0's 8192x2048 shape timed the 5-trit tables
        // 10-15 % behind the TQ2_0 tiles (two loads), where in a decode-ordered sequence of the model's matrices they
        // were 8 % ahead (264 against 287 µs). One untimed preparation puts the input side in cache and leaves the
        // weights cold: then one load timed the tables 9 % ahead (216 against 237 µs), one in a busier hour 10 % behind.
        trial.Prepare();
        var start = System.Diagnostics.Stopwatch.GetTimestamp();
        trial.Run();
        return System.Diagnostics.Stopwatch.GetElapsedTime(start).TotalSeconds;
    }

    private Trial TrialFor(WeightMatrix matrix, MatVecKernel kernel, byte* weights, int tokens)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(tokens, 1);
        if (!ReferenceEquals(matrix, _trialMatrix))
        {
            _trials.Clear();
            _trialMatrix = matrix;
        }
        if (_trials.TryGetValue((kernel, tokens), out var trial) && trial.Weights == weights)
            return trial;
        _pool ??= new ComputePool(threads, "lutra-tune");
        _work ??= new MatMulWork(_pool);
        trial = new Trial(matrix, kernel, weights, tokens, threads, _pool, _work);
        _trials[(kernel, tokens)] = trial;
        return trial;
    }

    public void Dispose()
    {
        _trials.Clear();
        _flush?.Dispose();
        if (!ReferenceEquals(_flushPool, _pool))
            _flushPool?.Dispose();
        _pool?.Dispose();
    }

    /// <summary>One candidate's product on one matrix: everything it needs except the weights, allocated once.</summary>
    private sealed class Trial
    {
        private readonly MatVecKernel _kernel;
        private readonly int _tokens;
        private readonly int _rows;
        private readonly int _columns;
        private readonly long _rowBytes;
        private readonly float[] _source;
        private readonly float[] _output;
        private readonly QuantizedInput _input;
        private readonly ComputePool _pool;
        private readonly MatMulWork _work;

        public Trial(WeightMatrix matrix, MatVecKernel kernel, byte* weights, int tokens, int threads, ComputePool pool, MatMulWork work)
        {
            _kernel = kernel;
            _tokens = tokens;
            _rows = matrix.Rows;
            _columns = matrix.Columns;
            _pool = pool;
            _work = work;
            Weights = weights;
            // A repacking kernel's candidate copy is in its layout, whose rows may be wider than the GGUF ones.
            _rowBytes = kernel.RepacksWeights ? kernel.RepackedRowBytes(matrix.RowBytes, _columns) : matrix.RowBytes;
            _source = GC.AllocateUninitializedArray<float>(tokens * _columns, pinned: true);
            var random = new Random(20251123);
            for (var i = 0; i < _source.Length; i++)
                _source[i] = (float)(random.NextDouble() * 2 - 1);
            // Prepared the way a forward pass prepares them, through QuantizedInput: on the pool, and for a decoded token
            // of a lookup-table kernel once per thread (tables read across cores cost two-thread decode 14 %; timed with
            // one shared copy, the TQ1_0 tables read 154 µs on llama-1b's 2048x8192 shape against 82 for the tiles).
            _input = new QuantizedInput([kernel], tokens, _columns, threads);
            _output = GC.AllocateUninitializedArray<float>(tokens * _rows, pinned: true);
        }

        public byte* Weights { get; }

        // The activations' preparation is part of the cost: a lookup-table kernel's tables take 5-15 % of its product
        // on llama-1b shapes (more on a prompt batch), where a multiply-add kernel's int8 rows take under 1 %. It is
        // charged to every matrix, though Q/K/V (and gate/up) share one preparation in a forward pass.
        public void Run()
        {
            var states = Prepared(out var stride, out var perThread);
            var y = (float*)Unsafe.AsPointer(ref _output[0]);
            _work.Run(_kernel, Weights, _rowBytes, _rows, _columns, states, stride, perThread, _tokens, y);
        }

        /// <summary>The preparation <see cref="Run"/> begins with, alone.</summary>
        public void Prepare() => Prepared(out _, out _);

        private byte* Prepared(out int stride, out bool perThread)
        {
            _input.Bind(_source, _tokens, _columns);
            return _input.Get(_kernel, out stride, _pool, out perThread);
        }
    }
}
