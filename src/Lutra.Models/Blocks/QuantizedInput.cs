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
    private readonly bool[] _ready;
    private readonly bool[] _perThread;
    private float[] _source = [];
    // The preparation in flight (split over the pool by rows).
    private MatVecKernel? _preparing;
    private byte* _target;
    private int _stride;
    private bool _copyPerThread;

    /// <param name="threads">Threads of the pool the states are prepared and read on (see <see cref="Get"/>).</param>
    public QuantizedInput(IEnumerable<MatVecKernel> kernels, int maxRows, int maxColumns, int threads = 1)
    {
        _kernels = kernels.Distinct().ToArray();
        _buffers = new byte[_kernels.Length][];
        _ready = new bool[_kernels.Length];
        _perThread = new bool[_kernels.Length];
        // Round up to a whole super-block so every kernel can size a state for it.
        var columns = (maxColumns + 255) / 256 * 256;
        for (var i = 0; i < _kernels.Length; i++)
        {
            var states = _kernels[i].UsesLookupTables ? Math.Max(maxRows, threads) : maxRows;
            _buffers[i] = GC.AllocateUninitializedArray<byte>(checked(states * _kernels[i].ActivationBytes(columns) + 64), pinned: true);
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
        Array.Clear(_ready);
    }

    /// <summary>
    /// The bound rows prepared for <paramref name="kernel"/>: <see cref="Rows"/> states of <paramref name="stride"/>
    /// bytes each. The pointer stays valid for the life of this object (the buffer is pinned).
    /// </summary>
    /// <param name="pool">Threads that share the conversion of a batch; null converts on the calling thread.</param>
    /// <param name="perThread">
    /// True when a single row was prepared once per thread of <paramref name="pool"/>, thread i's copy at i·stride: a
    /// lookup-table kernel's tables (100-400 KB per row) are read by every thread, and tables written by one core
    /// and read by another cost every core cache-line transfers each token, which took more time than building
    /// them (measured: two threads spent 14 % of decode in the shared tables' preparation, one thread 2 %).
    /// </param>
    public byte* Get(MatVecKernel kernel, out int stride, ComputePool? pool, out bool perThread)
    {
        var slot = Array.IndexOf(_kernels, kernel);
        if (slot < 0)
            throw new InvalidOperationException($"no activation buffer was planned for kernel {kernel}");
        stride = kernel.ActivationBytes(Columns);
        var buffer = _buffers[slot];
        var aligned = (byte*)(((nint)Unsafe.AsPointer(ref buffer[0]) + 63) & ~(nint)63);
        if (!_ready[slot])
        {
            var threads = pool?.ThreadCount ?? 1;
            _perThread[slot] = Rows == 1 && threads > 1 && kernel.UsesLookupTables
                && (long)threads * stride <= buffer.Length - 64;
            _preparing = kernel;
            _target = aligned;
            _stride = stride;
            _copyPerThread = _perThread[slot];
            try
            {
                if (pool is null || threads == 1 || (Rows < RowWork.MinParallelRows && !_copyPerThread))
                    Execute(0, 1);
                else
                    pool.Run(this);
            }
            finally
            {
                _preparing = null;
            }
            _ready[slot] = true;
        }
        perThread = _perThread[slot];
        return aligned;
    }

    public void Execute(int threadIndex, int threadCount)
    {
        var kernel = _preparing!;
        fixed (float* x = _source)
        {
            if (_copyPerThread)
            {
                kernel.PrepareActivations(x, Columns, _target + threadIndex * _stride);
                return;
            }
            var (start, end) = ComputePool.Partition(Rows, threadIndex, threadCount);
            for (var r = start; r < end; r++)
                kernel.PrepareActivations(x + r * Columns, Columns, _target + r * _stride);
        }
    }
}
