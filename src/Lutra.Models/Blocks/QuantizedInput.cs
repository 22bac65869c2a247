using System.Runtime.CompilerServices;
using Lutra.Core.Kernels;

namespace Lutra.Models.Blocks;

/// <summary>
/// The f32 input rows of one or more matmuls, prepared lazily for each kernel that reads them and kept until
/// the next <see cref="Bind"/>. Q/K/V (and gate/up) read the same normed input, so it is converted once for all
/// of them (llama.cpp converts once per mul_mat; the bytes are the same). Buffers are pinned, 64-byte aligned
/// and allocated once, for the largest row and batch the context will see.
/// </summary>
public sealed unsafe class QuantizedInput
{
    private readonly MatVecKernel[] _kernels;
    private readonly byte[][] _buffers;
    private readonly bool[] _ready;
    private float[] _source = [];

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
    public byte* Get(MatVecKernel kernel, out int stride)
    {
        var slot = Array.IndexOf(_kernels, kernel);
        if (slot < 0)
            throw new InvalidOperationException($"no activation buffer was planned for kernel {kernel}");
        stride = kernel.ActivationBytes(Columns);
        var buffer = _buffers[slot];
        var aligned = (byte*)(((nint)Unsafe.AsPointer(ref buffer[0]) + 63) & ~(nint)63);
        if (!_ready[slot])
        {
            fixed (float* x = _source)
            {
                for (var r = 0; r < Rows; r++)
                    kernel.PrepareActivations(x + r * Columns, Columns, aligned + r * stride);
            }
            _ready[slot] = true;
        }
        return aligned;
    }
}
