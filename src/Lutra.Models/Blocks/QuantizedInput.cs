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
    private float[] _source = [];
    // The preparation in flight (split over the pool by rows).
    private MatVecKernel? _preparing;
    private byte* _target;
    private int _stride;

    public QuantizedInput(IEnumerable<MatVecKernel> kernels, int maxRows, int maxColumns)
    {
        _kernels = kernels.Distinct().ToArray();
        _buffers = new byte[_kernels.Length][];
        _ready = new bool[_kernels.Length];
        // Round up to a whole super-block so every kernel can size a state for it.
        var columns = (maxColumns + 255) / 256 * 256;
        for (var i = 0; i < _kernels.Length; i++)
            _buffers[i] = GC.AllocateUninitializedArray<byte>(checked(maxRows * _kernels[i].ActivationBytes(columns) + 64), pinned: true);
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
    public byte* Get(MatVecKernel kernel, out int stride, ComputePool? pool = null)
    {
        var slot = Array.IndexOf(_kernels, kernel);
        if (slot < 0)
            throw new InvalidOperationException($"no activation buffer was planned for kernel {kernel}");
        stride = kernel.ActivationBytes(Columns);
        var buffer = _buffers[slot];
        var aligned = (byte*)(((nint)Unsafe.AsPointer(ref buffer[0]) + 63) & ~(nint)63);
        if (!_ready[slot])
        {
            _preparing = kernel;
            _target = aligned;
            _stride = stride;
            try
            {
                if (pool is null || pool.ThreadCount == 1 || (Rows < RowWork.MinParallelRows && !SplitsRow(kernel, pool)))
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
        return aligned;
    }

    /// <summary>
    /// A single row (decode) whose kernel prepares it in independent parts, enough of them for every thread: the
    /// ternary tables cost about as much per token as a barrier many times over.
    /// </summary>
    private bool SplitsRow(MatVecKernel kernel, ComputePool pool) =>
        Rows == 1 && kernel.ActivationPartSize > 0 && Columns % kernel.ActivationPartSize == 0
        && Columns / kernel.ActivationPartSize >= 2 * pool.ThreadCount;

    public void Execute(int threadIndex, int threadCount)
    {
        var kernel = _preparing!;
        if (Rows == 1 && threadCount > 1)
        {
            // Only reached through SplitsRow: the row's parts are split over the threads.
            var (first, end) = ComputePool.Partition(Columns / kernel.ActivationPartSize, threadIndex, threadCount);
            if (first < end)
            {
                fixed (float* x = _source)
                    kernel.PrepareActivations(x, Columns, _target, first, end);
            }
            return;
        }
        var (start, endRow) = ComputePool.Partition(Rows, threadIndex, threadCount);
        fixed (float* x = _source)
        {
            for (var r = start; r < endRow; r++)
                kernel.PrepareActivations(x + r * Columns, Columns, _target + r * _stride);
        }
    }
}
