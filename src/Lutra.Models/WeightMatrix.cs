using Lutra.Core.Kernels;
using Lutra.Core.Quants;
using Lutra.Core.Tensors;
using Lutra.Gguf;

namespace Lutra.Models;

/// <summary>
/// A 2-D weight read in place from the memory-mapped GGUF file, still in its stored ggml type.
/// <see cref="Rows"/> outputs of <see cref="Columns"/> inputs each (GGUF ne = [Columns, Rows]).
/// Where a kernel with a private layout exists for the type (the ternary lookup-table kernels), the matrix
/// keeps a repacked copy for it; the mapped bytes still serve dequantization and reference mode.
/// </summary>
public sealed unsafe class WeightMatrix : IDisposable
{
    private readonly byte* _data;
    private readonly NativeBuffer? _repacked;

    public WeightMatrix(string name, GgmlType type, int columns, int rows, byte* data)
    {
        var info = QuantTypes.RequireSupported(type);
        if (columns % info.BlockSize != 0)
            throw new GgufFormatException($"tensor '{name}': row length {columns} is not a multiple of the {info.Name} block size {info.BlockSize}");
        Name = name;
        Type = type;
        Columns = columns;
        Rows = rows;
        RowBytes = checked((int)info.RowBytes(columns));
        _data = data;
        Kernel = KernelTable.Get(type);
        KernelData = data;
        foreach (var repacking in KernelTable.RepackingKernels(type, KernelIsa.Selected))
        {
            var buffer = new NativeBuffer((long)rows * RowBytes);
            if (repacking.TryPrepareWeights(data, RowBytes, rows, columns, buffer.Pointer))
            {
                _repacked = buffer;
                Kernel = repacking;
                KernelData = buffer.Pointer;
                break;
            }
            buffer.Dispose();
        }
    }

    public string Name { get; }
    public GgmlType Type { get; }
    public int Columns { get; }
    public int Rows { get; }
    public int RowBytes { get; }

    /// <summary>The CPU kernel that multiplies this matrix (chosen once, from the type and instruction set).</summary>
    public MatVecKernel Kernel { get; }

    /// <summary>First byte of row 0 in the memory map.</summary>
    public byte* Data => _data;

    /// <summary>The weights as <see cref="Kernel"/> reads them: the memory map, or the kernel's repacked copy.</summary>
    public byte* KernelData { get; }

    public void Dispose() => _repacked?.Dispose();

    public ReadOnlySpan<byte> Row(int row) => new(_data + (long)row * RowBytes, RowBytes);

    /// <summary>Row <paramref name="row"/> dequantized to f32 (embedding lookup, reference mode).</summary>
    public void DequantizeRow(int row, Span<float> destination) =>
        QuantReference.Dequantize(Type, Row(row), destination[..Columns]);

    public override string ToString() => $"{Name} [{Columns}, {Rows}] {QuantTypes.Get(Type).Name}";
}
