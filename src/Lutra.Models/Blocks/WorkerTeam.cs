using System.Runtime.ExceptionServices;

namespace Lutra.Models.Blocks;

/// <summary>A loop body over a range of rows; implementations are reused objects, so dispatch allocates nothing.</summary>
public interface IRowWork
{
    void Execute(int begin, int end);
}

/// <summary>
/// A fixed team of threads that splits a row loop into equal contiguous ranges; the calling thread takes the
/// first range. Created once per context; every dispatch is allocation-free. Row splitting does not change
/// any arithmetic, so results are identical for every team size.
/// </summary>
public sealed class WorkerTeam : IDisposable
{
    // Below this many rows per thread the hand-off costs more than it saves.
    private const int MinRowsPerThread = 16;

    private readonly Thread[] _threads;
    private readonly SemaphoreSlim[] _start;
    private readonly CountdownEvent _done;
    private IRowWork? _work;
    private int _rows;
    private int _active;
    private ExceptionDispatchInfo? _failure;
    private volatile bool _stopping;

    public WorkerTeam(int size)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(size, 1);
        _threads = new Thread[size - 1];
        _start = new SemaphoreSlim[size - 1];
        _done = new CountdownEvent(1);
        for (var i = 0; i < _threads.Length; i++)
        {
            _start[i] = new SemaphoreSlim(0);
            var index = i + 1;
            _threads[i] = new Thread(() => Loop(index)) { IsBackground = true, Name = $"lutra worker {index}" };
            _threads[i].Start();
        }
    }

    public int Size => _threads.Length + 1;

    public void Run(IRowWork work, int rows)
    {
        var active = Math.Min(Size, rows / MinRowsPerThread);
        if (active <= 1)
        {
            work.Execute(0, rows);
            return;
        }
        _work = work;
        _rows = rows;
        _active = active;
        _failure = null;
        _done.Reset(active - 1);
        for (var i = 0; i < active - 1; i++)
            _start[i].Release();
        try
        {
            var (begin, end) = Range(0);
            work.Execute(begin, end);
        }
        finally
        {
            _done.Wait();
            _work = null;
        }
        _failure?.Throw();
    }

    private (int Begin, int End) Range(int index) =>
        ((int)((long)_rows * index / _active), (int)((long)_rows * (index + 1) / _active));

    private void Loop(int index)
    {
        while (true)
        {
            _start[index - 1].Wait();
            if (_stopping)
                return;
            try
            {
                var (begin, end) = Range(index);
                _work!.Execute(begin, end);
            }
            catch (Exception e)
            {
                _failure ??= ExceptionDispatchInfo.Capture(e);
            }
            finally
            {
                _done.Signal();
            }
        }
    }

    public void Dispose()
    {
        if (_stopping)
            return;
        _stopping = true;
        foreach (var s in _start)
            s.Release();
        foreach (var t in _threads)
            t.Join();
        foreach (var s in _start)
            s.Dispose();
        _done.Dispose();
    }
}
