using Lutra.Core.Quants;

namespace Lutra.Models.Blocks;

/// <summary>
/// The f32 input rows of one or more matmuls, converted lazily to each activation format that a weight asks
/// for and kept until the next <see cref="Bind"/>. Q/K/V (and gate/up) read the same normed input, so it is
/// quantized once for all of them (llama.cpp converts once per mul_mat; the result is the same bytes).
/// Buffers are allocated once, for the largest row and batch the context will see.
/// </summary>
public sealed class QuantizedInput
{
    private readonly GgmlType[] _slotTypes;
    private readonly byte[][] _slots;
    private readonly bool[] _ready;
    private float[] _source = [];

    public QuantizedInput(IEnumerable<GgmlType> activationTypes, int maxRows, int maxColumns)
    {
        _slotTypes = activationTypes.Distinct().ToArray();
        _slots = new byte[_slotTypes.Length][];
        _ready = new bool[_slotTypes.Length];
        for (var i = 0; i < _slots.Length; i++)
            _slots[i] = new byte[checked(maxRows * ActivationRowBytes(_slotTypes[i], maxColumns))];
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

    /// <summary>The bound rows in <paramref name="activationType"/>, each <see cref="ActivationRowBytes"/> long.</summary>
    public ReadOnlySpan<byte> Get(GgmlType activationType)
    {
        var slot = Array.IndexOf(_slotTypes, activationType);
        if (slot < 0)
            throw new InvalidOperationException($"no activation buffer was planned for {activationType}");
        var rowBytes = ActivationRowBytes(activationType, Columns);
        var dst = _slots[slot].AsSpan(0, Rows * rowBytes);
        if (!_ready[slot])
        {
            for (var r = 0; r < Rows; r++)
                QuantReference.QuantizeActivations(activationType, Source.Slice(r * Columns, Columns), dst.Slice(r * rowBytes, rowBytes));
            _ready[slot] = true;
        }
        return dst;
    }

    public static int ActivationRowBytes(GgmlType activationType, int columns) =>
        checked((int)QuantTypes.Get(activationType).RowBytes(columns));
}
