using System.Runtime.ExceptionServices;

namespace Lutra.Core.Threading;

/// <summary>Work split over the threads of a <see cref="ComputePool"/>: called once on each thread.</summary>
public interface IComputeWork
{
    void Execute(int threadIndex, int threadCount);
}

/// <summary>
/// A persistent pool of compute threads. A matmul lasts tens of microseconds during decode, far too short
/// for Parallel.For or a Task per call, so workers stay alive, spin briefly waiting for the next job and
/// only then sleep. The calling thread takes part as thread 0, so a pool of N threads starts N − 1 workers.
/// Work is split statically: every thread gets an index and derives its own row range.
/// </summary>
public sealed class ComputePool : IDisposable
{
    // About 50-100 µs of spinning: longer than the gap between matmuls in a forward pass, shorter than
    // the gap between user requests.
    private const int SpinIterationsBeforeSleep = 20_000;

    private readonly Thread[] _workers;
    private readonly SemaphoreSlim[] _wake;
    private readonly int[] _sleeping;
    private IComputeWork? _work;
    private int _generation;
    private int _pending;
    private volatile bool _disposed;
    private ExceptionDispatchInfo? _failure;

    /// <param name="name">Prefix of the worker threads' names (name-1, name-2, …), so profiles tell pools apart.</param>
    public ComputePool(int threadCount, string name = "lutra-compute")
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(threadCount, 1);
        ThreadCount = threadCount;
        _workers = new Thread[threadCount - 1];
        _wake = new SemaphoreSlim[threadCount - 1];
        _sleeping = new int[threadCount - 1];
        for (var i = 0; i < _workers.Length; i++)
        {
            _wake[i] = new SemaphoreSlim(0);
            var index = i;
            _workers[i] = new Thread(() => WorkerLoop(index)) { IsBackground = true, Name = $"{name}-{i + 1}" };
            _workers[i].Start();
        }
    }

    /// <summary>Threads taking part in each job, including the caller.</summary>
    public int ThreadCount { get; }

    /// <summary>
    /// Runs <paramref name="work"/> on every thread (the caller is thread 0) and returns when all are done.
    /// Not re-entrant: one job at a time per pool. An exception on any thread is rethrown here.
    /// </summary>
    public void Run(IComputeWork work)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_workers.Length == 0)
        {
            work.Execute(0, 1);
            return;
        }
        _work = work;
        _failure = null;
        Volatile.Write(ref _pending, _workers.Length);
        Interlocked.Increment(ref _generation);
        for (var i = 0; i < _wake.Length; i++)
        {
            if (Interlocked.Exchange(ref _sleeping[i], 0) == 1)
                _wake[i].Release();
        }
        try
        {
            work.Execute(0, ThreadCount);
        }
        catch (Exception e)
        {
            _failure ??= ExceptionDispatchInfo.Capture(e);
        }
        var spinner = new SpinWait();
        while (Volatile.Read(ref _pending) != 0)
            spinner.SpinOnce(sleep1Threshold: -1);
        _work = null;
        _failure?.Throw();
    }

    /// <summary>The half-open range [start, end) of <paramref name="total"/> items that thread <paramref name="index"/> owns,
    /// in chunks that are multiples of <paramref name="granularity"/> (except the last).</summary>
    public static (int Start, int End) Partition(int total, int index, int count, int granularity = 1)
    {
        var units = (total + granularity - 1) / granularity;
        var per = units / count;
        var extra = units % count;
        var startUnit = index * per + Math.Min(index, extra);
        var endUnit = startUnit + per + (index < extra ? 1 : 0);
        return (Math.Min(total, startUnit * granularity), Math.Min(total, endUnit * granularity));
    }

    private void WorkerLoop(int index)
    {
        var seen = 0;
        while (true)
        {
            var spins = 0;
            while (Volatile.Read(ref _generation) == seen)
            {
                if (_disposed)
                    return;
                if (++spins < SpinIterationsBeforeSleep)
                {
                    Thread.SpinWait(8);
                    continue;
                }
                // Announce sleep, then re-check: Run either sees the flag and releases us, or we see the new job.
                Volatile.Write(ref _sleeping[index], 1);
                if (Volatile.Read(ref _generation) != seen || _disposed)
                {
                    if (Interlocked.Exchange(ref _sleeping[index], 0) == 0)
                        _wake[index].Wait(); // Run already claimed the flag and will (or did) release us.
                }
                else
                {
                    _wake[index].Wait();
                }
                spins = 0;
            }
            if (_disposed)
                return;
            seen = Volatile.Read(ref _generation);
            try
            {
                _work!.Execute(index + 1, ThreadCount);
            }
            catch (Exception e)
            {
                Interlocked.CompareExchange(ref _failure, ExceptionDispatchInfo.Capture(e), null);
            }
            Interlocked.Decrement(ref _pending);
        }
    }

    public void Dispose()
    {
        if (_disposed)
            return;
        _disposed = true;
        for (var i = 0; i < _wake.Length; i++)
            _wake[i].Release();
        foreach (var t in _workers)
            t.Join();
        foreach (var s in _wake)
            s.Dispose();
    }
}
