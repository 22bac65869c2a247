using System.Runtime.CompilerServices;
using Lutra.Core.Kernels;
using Lutra.Core.Threading;

namespace Lutra.Models.Blocks;

/// <summary>
/// The f32 input rows of one or more matmuls, prepared lazily for each kernel that reads them and kept until
/// the next <see cref="Bind"/>. Q/K/V (and gate/up) read the same normed input, so it is converted once for all
/// of them (llama.cpp converts once per mul_mat; the bytes are the same). Buffers are pinned, 64-byte aligned
/// and allocated once, for the largest row and batch the context will see.
/// </summary>
public sealed unsafe class QuantizedInput : IComputeWork
{
    private readonly MatVecKernel[] _kernels;
    private readonly byte[][] _buffers;
    // Per kernel: the input rows its buffer holds prepared ([first, first + count)), or none (count 0).
    private readonly int[] _readyFirst;
    private readonly int[] _readyCount;
    private readonly bool[] _perThread;
    // Per kernel held in token groups: bytes of its buffer that belong to each thread (a group each); else 0.
    private readonly long[] _threadArea;
    // Per kernel: whether its states hold one token group (per thread) instead of the whole batch.
    private readonly bool[] _grouped;

    /// <summary>Prepared bytes per input column from which a lookup-table kernel's states are held a token group at a time.</summary>
    private const int GroupedBytesPerColumn = 32;
    private float[] _source = [];
    // The preparation in flight (split over the pool by rows).
    private MatVecKernel? _preparing;
    private byte* _target;
    private int _stride;
    private int _first;
    private int _count;
    private bool _copyPerThread;

    /// <param name="threads">Threads of the pool the states are prepared and read on (see <see cref="Get(MatVecKernel, out int, ComputePool?, out bool)"/>).</param>
    public QuantizedInput(IEnumerable<MatVecKernel> kernels, int maxRows, int maxColumns, int threads = 1)
    {
        _kernels = kernels.Distinct().ToArray();
        _buffers = new byte[_kernels.Length][];
        _readyFirst = new int[_kernels.Length];
        _readyCount = new int[_kernels.Length];
        _perThread = new bool[_kernels.Length];
        _threadArea = new long[_kernels.Length];
        _grouped = new bool[_kernels.Length];
        // Round up to a whole super-block so every kernel can size a state for it.
        var columns = (maxColumns + 255) / 256 * 256;
        for (var i = 0; i < _kernels.Length; i++)
        {
            long stride = _kernels[i].ActivationBytes(columns);
            // Large lookup tables (the 5-trit tables: 100-400 KB per row) are prepared one token group at a time, each
            // thread its own: a 512-token batch of them would take 220 MB, and tables written for a whole prompt and
            // read back for every chunk of rows went through memory again and again (llama-1b TQ1_0 tables, pp128:
            // 176 → 250 t/s at one thread, 227 → 445 at two). The bit-serial tables (19-78 KB per row) stay prepared
            // for the whole batch: in groups, their compute-bound prefill took 6-20 % longer at two threads (more pool
            // jobs, each ending on its slowest chunk). A group takes at most TokenGroupBytes, or 4 rows when fewer fit.
            _grouped[i] = _kernels[i].UsesLookupTables && stride >= GroupedBytesPerColumn * columns;
            _threadArea[i] = _grouped[i] ? Math.Min(maxRows * stride, Math.Max(MatMulWork.TokenGroupBytes, 4 * stride)) : 0;
            // Other lookup tables: the batch, or one decoded row per thread.
            var bytes = _grouped[i] ? threads * _threadArea[i]
                : _kernels[i].UsesLookupTables ? Math.Max(maxRows, threads) * stride
                : maxRows * stride;
            _buffers[i] = GC.AllocateUninitializedArray<byte>(checked((int)(bytes + 64)), pinned: true);
        }
    }

    /// <summary>f32 input: <see cref="Rows"/> rows of <see cref="Columns"/> values, row-major.</summary>
    public ReadOnlySpan<float> Source => _source.AsSpan(0, Rows * Columns);

    public int Rows { get; private set; }

    public int Columns { get; private set; }

    public void Bind(float[] source, int rows, int columns)
    {
        _source = source;
        Rows = rows;
        Columns = columns;
        Array.Clear(_readyCount);
    }

    /// <summary>
    /// Input rows that <paramref name="kernel"/>'s states hold at once: every bound row, or for a lookup-table kernel
    /// one token group (<see cref="MatMulWork.TokenGroup"/>), which callers prepare and multiply in turn.
    /// </summary>
    public int RowsAtOnce(MatVecKernel kernel) =>
        _grouped[Slot(kernel)] ? MatMulWork.TokenGroup(kernel.ActivationBytes(Columns), Rows) : Rows;

    /// <summary>
    /// The bound rows prepared for <paramref name="kernel"/>: <see cref="Rows"/> states of <paramref name="stride"/>
    /// bytes, the first at the returned (64-byte aligned) address. Prepared on first use after each
    /// <see cref="Bind"/>; the same state serves every matrix (and thread) reading this input with this kernel.
    /// Only for kernels whose states hold every row (<see cref="RowsAtOnce"/>).
    /// </summary>
    /// <param name="pool">Threads that share the conversion of a batch; null converts on the calling thread.</param>
    /// <param name="perThread">
    /// True when a single row was prepared once per thread of <paramref name="pool"/>, thread i's copy at i·stride: a
    /// lookup-table kernel's tables (100-400 KB per row) are read by every thread, and tables written by one core
    /// and read by another cost every core cache-line transfers each token, which took more time than building
    /// them (measured: two threads spent 14 % of decode in the shared tables' preparation, one thread 2 %).
    /// </param>
    public byte* Get(MatVecKernel kernel, out int stride, ComputePool? pool, out bool perThread) =>
        Get(kernel, 0, Rows, out stride, pool, out perThread);

    /// <summary>
    /// Rows [<paramref name="first"/>, <paramref name="first"/> + <paramref name="count"/>) of the bound input
    /// prepared for <paramref name="kernel"/>, row <paramref name="first"/>'s state at the returned address (see
    /// <see cref="Get(MatVecKernel, out int, ComputePool?, out bool)"/>). At most <see cref="RowsAtOnce"/> rows.
    /// </summary>
    public byte* Get(MatVecKernel kernel, int first, int count, out int stride, ComputePool? pool, out bool perThread)
    {
        var slot = Slot(kernel);
        if (first < 0 || count < 1 || first + count > Rows || count > RowsAtOnce(kernel))
            throw new ArgumentOutOfRangeException(nameof(count), $"rows {first}..{first + count} of {Rows}, at most {RowsAtOnce(kernel)} at once for {kernel}");
        stride = kernel.ActivationBytes(Columns);
        var buffer = _buffers[slot];
        if ((long)count * stride > buffer.Length - 64)
            throw new InvalidOperationException($"{count} rows of {Columns} columns do not fit the buffer planned for {kernel}");
        var aligned = (byte*)(((nint)Unsafe.AsPointer(ref buffer[0]) + 63) & ~(nint)63);
        if (_readyFirst[slot] != first || _readyCount[slot] != count)
        {
            var threads = pool?.ThreadCount ?? 1;
            _perThread[slot] = count == 1 && threads > 1 && kernel.UsesLookupTables
                && (long)threads * stride <= buffer.Length - 64;
            _preparing = kernel;
            _target = aligned;
            _stride = stride;
            _first = first;
            _count = count;
            _copyPerThread = _perThread[slot];
            _readyCount[slot] = 0;
            try
            {
                if (pool is null || threads == 1 || (count < RowWork.MinParallelRows && !_copyPerThread))
                    Execute(0, 1);
                else
                    pool.Run(this);
            }
            finally
            {
                _preparing = null;
            }
            _readyFirst[slot] = first;
            _readyCount[slot] = count;
        }
        perThread = _perThread[slot];
        return aligned;
    }

    /// <summary>
    /// Rows [<paramref name="first"/>, <paramref name="first"/> + <paramref name="count"/>) prepared for
    /// <paramref name="kernel"/> on the calling thread, into the part of the kernel's buffer that belongs to
    /// <paramref name="thread"/> (a lookup-table kernel's buffer holds one token group per thread): for a prompt split
    /// over threads by token groups, each thread writes and reads its own tables. Not cached.
    /// </summary>
    public byte* PrepareForThread(MatVecKernel kernel, int first, int count, int thread, out int stride)
    {
        var slot = Slot(kernel);
        if (!_grouped[slot] || first < 0 || count < 1 || first + count > Rows || count > RowsAtOnce(kernel))
            throw new ArgumentOutOfRangeException(nameof(count), $"rows {first}..{first + count} of {Rows} for {kernel}");
        stride = kernel.ActivationBytes(Columns);
        var buffer = _buffers[slot];
        var target = (byte*)(((nint)Unsafe.AsPointer(ref buffer[0]) + 63) & ~(nint)63) + thread * _threadArea[slot];
        if (target + (long)count * stride > (byte*)Unsafe.AsPointer(ref buffer[0]) + buffer.Length)
            throw new ArgumentOutOfRangeException(nameof(thread), $"no token group buffer planned for thread {thread}");
        // Thread 0's area is where the shared states live: after this they are stale (every thread stores the same 0).
        _readyCount[slot] = 0;
        fixed (float* x = _source)
        {
            for (var r = 0; r < count; r++)
                kernel.PrepareActivations(x + (long)(first + r) * Columns, Columns, target + r * stride);
        }
        return target;
    }

    private int Slot(MatVecKernel kernel)
    {
        var slot = Array.IndexOf(_kernels, kernel);
        return slot >= 0 ? slot : throw new InvalidOperationException($"no activation buffer was planned for kernel {kernel}");
    }

    public void Execute(int threadIndex, int threadCount)
    {
        var kernel = _preparing!;
        fixed (float* x = _source)
        {
            var row = x + (long)_first * Columns;
            if (_copyPerThread)
            {
                kernel.PrepareActivations(row, Columns, _target + threadIndex * _stride);
                return;
            }
            var (start, end) = ComputePool.Partition(_count, threadIndex, threadCount);
            for (var r = start; r < end; r++)
                kernel.PrepareActivations(row + (long)r * Columns, Columns, _target + r * _stride);
        }
    }
}
